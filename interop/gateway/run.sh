#!/usr/bin/env bash
# The gateway against a terminal we did not write: `kassa up` on a temporary data directory and
# a Python terminal (pyiso8583 + psec) driving every row of docs/reference/iso8583.md's transaction table over
# TCP. Prints one line per check and `gateway: N passed, M failed`; exits non-zero on a failure.
#
# Environment: KASSA_VENV (default /tmp/kassa-venv), KASSA_BIN (default: the debug binary under
# $CARGO_TARGET_DIR, built here), CARGO_TARGET_DIR (default <repo>/target).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${KASSA_VENV:-/tmp/kassa-venv}"
target="${CARGO_TARGET_DIR:-$repo/target}"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
# The versions this suite was written against; `cryptography` provides psec's TripleDES.
"$venv/bin/pip" install --quiet --disable-pip-version-check \
    "pyiso8583==4.0.1" "psec==1.3.0" "cryptography==50.0.2"

if [ -z "${KASSA_BIN:-}" ]; then
    (cd "$repo" && CARGO_TARGET_DIR="$target" cargo build --quiet -p kassa)
    KASSA_BIN="$target/debug/kassa"
fi

cd "$here"
"$venv/bin/python" gateway_interop.py "$KASSA_BIN"
