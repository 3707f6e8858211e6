#!/usr/bin/env bash
# Interop of Kassa's ISO 8583 codec with pyiso8583: every message kind of docs/reference/iso8583.md, both
# directions, byte for byte. Exits non-zero on any mismatch.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${KASSA_VENV:-/tmp/kassa-venv}"
target="${CARGO_TARGET_DIR:-$repo/target}"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check "pyiso8583==4.0.1"

(cd "$repo" && CARGO_TARGET_DIR="$target" cargo build --quiet --release -p kassa-iso8583 --example iso8583_interop)

cd "$here"
"$venv/bin/python" interop.py "$target/release/examples/iso8583_interop"
