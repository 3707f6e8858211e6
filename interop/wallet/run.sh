#!/usr/bin/env bash
# The wallet simulator against wallet SDKs we did not write: `kassa sim` on a temporary data
# directory, driven by the official Alipay Python SDK (alipay-sdk-python) and by wechatpy, with
# their notifications received and verified here. Prints one line per check and
# `wallet: N passed, M failed`; exits non-zero on a failure.
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
# The versions this suite was written against (README.md says what each adapts).
"$venv/bin/pip" install --quiet --disable-pip-version-check \
    "alipay-sdk-python==3.7.1411" "rsa==4.9.1" "pycryptodome==4.5.0" \
    "wechatpy==1.8.18" "xmltodict==1.0.4" "requests==2.34.2"

if [ -z "${KASSA_BIN:-}" ]; then
    (cd "$repo" && CARGO_TARGET_DIR="$target" cargo build --quiet -p kassa)
    KASSA_BIN="$target/debug/kassa"
fi

cd "$here"
PYTHONDONTWRITEBYTECODE=1 "$venv/bin/python" wallet_interop.py "$KASSA_BIN"
