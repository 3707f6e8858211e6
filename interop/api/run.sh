#!/usr/bin/env bash
# schemathesis against Kassa's own OpenAPI document: `kassa up` (the debug binary) on a temporary
# data directory and free ports, then schemathesis generates requests for every operation of
# GET /api/openapi.json with the demo API key (examples, coverage, fuzzing, and stateful runs that
# follow the document's links from one answer to the next) and checks every answer: no 5xx, and
# the status, content type, headers and body as the document says, and 405 for a method a route
# does not take. Fails on any finding.
#
# Environment: KASSA_VENV (default /tmp/kassa-venv), KASSA_BIN (default: the debug binary under
# $CARGO_TARGET_DIR, built here when missing), CARGO_TARGET_DIR (default <repo>/target),
# KASSA_API_EXAMPLES (test cases per operation and phase, default 100: the run stays well under
# 3 minutes).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${KASSA_VENV:-/tmp/kassa-venv}"
target="${CARGO_TARGET_DIR:-$repo/target}"
examples="${KASSA_API_EXAMPLES:-100}"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==4.32.5"

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

# Free ports, then `kassa up` on them; another process may take a port between the two, so a
# start that fails on a taken port is tried again on new ones (at most 3 times).
start_host() {
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
    local deadline=$((SECONDS + 120))
    until curl -fsS "http://127.0.0.1:$http/readyz" >/dev/null 2>&1; do
        if ! kill -0 "$host_pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
            kill "$host_pid" 2>/dev/null || true
            wait "$host_pid" 2>/dev/null || true
            host_pid=""
            return 1
        fi
        sleep 0.2
    done
}

started=""
for attempt in 1 2 3; do
    if start_host; then
        started=yes
        break
    fi
    if ! grep -q "address already in use" "$data/up.log"; then
        break
    fi
    echo "api: a port was taken meanwhile (attempt $attempt); trying other ports" >&2
done
if [ -z "$started" ]; then
    echo "api: kassa up did not become ready" >&2
    tail -n 40 "$data/up.log" >&2
    exit 1
fi
api_key="$("$venv/bin/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["api_key"])' \
    "$data/demo/credentials.json")"

# First a payment by hand, through the wallet simulator: the demo key works, the payment is
# paid, and the same Idempotency-Key answers the same trade without paying again.
"$venv/bin/python" - "http://127.0.0.1:$http" "$api_key" <<'PY'
import json, sys, urllib.request

base, key = sys.argv[1], sys.argv[2]

def call(method, path, body=None, idempotency_key=None):
    headers = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, dict(answer.headers), json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.load(error)

body = {"out_trade_no": "interop-1", "amount": 1234, "currency": "CNY", "code": "281234567890123401"}
status, _, trade = call("POST", "/api/v1/qr/collect", body, "interop-key-1")
assert (status, trade["status"]) == (200, "paid"), (status, trade)
status, headers, again = call("POST", "/api/v1/qr/collect", body, "interop-key-1")
assert status == 200 and again == trade and headers.get("idempotent-replayed") == "true", (status, headers, again)
status, _, error = call("POST", "/api/v1/qr/collect", dict(body, amount=1), "interop-key-1")
assert (status, error["error"]["code"]) == (422, "idempotency_key_reused"), (status, error)
status, _, page = call("GET", "/api/v1/transactions?reference=interop-1")
assert status == 200 and [row["id"] for row in page["data"]] == ["interop-1"], (status, page)
print("api: a collection through the wallet simulator, replayed by its Idempotency-Key")
PY

status=0
# From the temporary directory: schemathesis keeps its example database in the working directory.
cd "$data"
"$venv/bin/schemathesis" run "http://127.0.0.1:$http/api/openapi.json" \
    --url "http://127.0.0.1:$http" \
    --header "Authorization: Bearer $api_key" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,unsupported_method \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "$examples" \
    --seed 20261206 \
    --workers 2 \
    --request-timeout 30 \
    --output-sanitize true \
    --no-color || status=$?

if [ "$status" -ne 0 ]; then
    echo "api: schemathesis found problems (exit $status); the host's log:" >&2
    tail -n 40 "$data/up.log" >&2
    exit "$status"
fi
echo "api: schemathesis found nothing"
