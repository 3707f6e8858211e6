#!/usr/bin/env bash
# Checks kassa-crypto against an independent implementation (psec on OpenSSL, plus the
# `cryptography` package for the at-rest format): the Rust example prints values for random
# keys, PINs, PANs and messages, and check.py recomputes each one.
#
# Environment: KASSA_VENV (default /tmp/kassa-venv), KASSA_INTEROP_SEED (default: random, printed
# so that a failure can be reproduced), KASSA_INTEROP_CASES (default 200 per kind).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${KASSA_VENV:-/tmp/kassa-venv}"
seed="${KASSA_INTEROP_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
cases="${KASSA_INTEROP_CASES:-200}"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
# psec 1.3 is the version this check was written against; `cryptography` still provides the
# TripleDES it needs (deprecated, with a warning that check.py silences).
if ! "$venv/bin/python" -c 'import psec' 2>/dev/null; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'psec==1.3.0'
fi

output="$(mktemp)"
trap 'rm -f "$output"' EXIT
echo "crypto interop: seed $seed, $cases cases per kind" >&2
(cd "$repo" && cargo run --quiet -p kassa-crypto --example crypto_interop -- "$seed" "$cases") >"$output"
"$venv/bin/python" "$here/check.py" <"$output"
