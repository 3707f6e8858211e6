#!/usr/bin/env bash
# /gateway.do against the official Alipay SDKs: `kassa up` (the debug binary) on a temporary data
# directory and free ports, then every method through PyPI alipay-sdk-python and through npm
# alipay-sdk, each signing with the demo app's key and verifying every answer with
# `gateway_public_key_pem` from <data-dir>/demo/credentials.json. Prints one line per check and a
# total per SDK; exits non-zero on any failure.
#
# Environment: KASSA_VENV (default /tmp/kassa-venv), KASSA_NPM_DIR (where npm installs the Node
# SDK, outside the clone; default /tmp/kassa-ci-npm), KASSA_BIN (default: the debug binary under
# $CARGO_TARGET_DIR, built here only when missing), CARGO_TARGET_DIR (default <repo>/target).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${KASSA_VENV:-/tmp/kassa-venv}"
npm_dir="${KASSA_NPM_DIR:-/tmp/kassa-ci-npm}"
target="${CARGO_TARGET_DIR:-$repo/target}"

# The versions this suite was written against (README.md).
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check \
    "alipay-sdk-python==3.7.1411" "rsa==4.9.1" "pycryptodome==4.5.0"
if ! command -v npm >/dev/null; then
    # The Node SDK needs Node 18.19 or later (Debian 12's nodejs is 18.19).
    echo "aggregator: node and npm are missing: installing them"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq nodejs npm >/dev/null
fi
mkdir -p "$npm_dir"
[ -f "$npm_dir/package.json" ] || echo '{"private": true}' >"$npm_dir/package.json"
(cd "$npm_dir" && npm install --no-audit --no-fund --silent "alipay-sdk@4.14.0")

if [ -z "${KASSA_BIN:-}" ]; then
    KASSA_BIN="$target/debug/kassa"
    if [ ! -x "$KASSA_BIN" ]; then
        (cd "$repo" && CARGO_TARGET_DIR="$target" cargo build --quiet -p kassa)
    fi
fi

data="$(mktemp -d)"
host_pid=""
cleanup() {
    if [ -n "$host_pid" ]; then
        kill "$host_pid" 2>/dev/null || true
        wait "$host_pid" 2>/dev/null || true
    fi
    rm -rf "$data"
}
trap cleanup EXIT

read -r http iso sim < <("$venv/bin/python" - <<'PY'
import socket
sockets = [socket.socket() for _ in range(3)]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in sockets])
PY
)

"$KASSA_BIN" up --data-dir "$data" --http "127.0.0.1:$http" --iso "127.0.0.1:$iso" --sim "127.0.0.1:$sim" \
    >"$data/up.log" 2>&1 &
host_pid=$!

deadline=$((SECONDS + 120))
until curl -fsS "http://127.0.0.1:$http/readyz" >/dev/null 2>&1; do
    if ! kill -0 "$host_pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
        echo "aggregator: kassa up did not become ready" >&2
        tail -n 40 "$data/up.log" >&2
        exit 1
    fi
    sleep 0.2
done

gateway="http://127.0.0.1:$http/gateway.do"
credentials="$data/demo/credentials.json"
status=0
PYTHONDONTWRITEBYTECODE=1 "$venv/bin/python" "$here/gateway_python.py" "$gateway" "http://127.0.0.1:$sim" \
    "$credentials" || status=1
node "$here/gateway_node.cjs" "$npm_dir" "$gateway" "http://127.0.0.1:$sim" "$credentials" || status=1
if [ "$status" -ne 0 ]; then
    echo "aggregator: the last lines of kassa up's log:" >&2
    tail -n 40 "$data/up.log" >&2
fi
exit "$status"
