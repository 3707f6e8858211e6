#!/usr/bin/env bash
# The back office in a real browser: Debian's chromium driven by Playwright's test runner
# (@playwright/test, with chromium's executable path: Playwright's own browser download is never
# used), against `kassa up` (the debug binary) on a temporary data directory and free ports.
# Every spec under tests/ runs, in English and in Chinese where it says so.
#
# Environment: KASSA_NPM_WEB_DIR (where npm installs the runner, outside the clone; default
# /tmp/kassa-ci-npm-web), KASSA_BIN (default: the debug binary under $CARGO_TARGET_DIR, built
# here only when missing), KASSA_SCREENSHOTS (a directory: the main pages are saved there as PNG),
# CHROMIUM (default /usr/bin/chromium).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
npm_dir="${KASSA_NPM_WEB_DIR:-/tmp/kassa-ci-npm-web}"
target="${CARGO_TARGET_DIR:-$repo/target}"
chromium="${CHROMIUM:-/usr/bin/chromium}"

if [ ! -x "$chromium" ] || ! command -v npm >/dev/null; then
    echo "web: installing Debian's chromium (and node/npm if missing)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    packages=(chromium fonts-noto-cjk)
    command -v npm >/dev/null || packages+=(nodejs npm)
    apt-get install -y -qq "${packages[@]}" >/dev/null
fi
mkdir -p "$npm_dir"
[ -f "$npm_dir/package.json" ] || echo '{"private": true}' >"$npm_dir/package.json"
# The version this suite was written against; PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: chromium is Debian's.
(cd "$npm_dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --silent "@playwright/test@1.65.2")

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

read -r http iso sim < <(python3 - <<'PY'
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
        echo "web: kassa up did not become ready" >&2
        tail -n 40 "$data/up.log" >&2
        exit 1
    fi
    sleep 0.2
done

status=0
(cd "$here" && NODE_PATH="$npm_dir/node_modules" KASSA_URL="http://127.0.0.1:$http" KASSA_SIM="http://127.0.0.1:$sim" \
    KASSA_DATA="$data" KASSA_BIN="$KASSA_BIN" CHROMIUM="$chromium" \
    "$npm_dir/node_modules/.bin/playwright" test --config "$here/playwright.config.cjs") || status=1
if [ "$status" -ne 0 ]; then
    echo "web: the last lines of kassa up's log:" >&2
    tail -n 40 "$data/up.log" >&2
fi
exit "$status"
