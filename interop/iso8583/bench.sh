#!/usr/bin/env bash
# Kassa vs pyiso8583: decode + encode of a typical 0200 sale, per second on one core.
# Targets: Kassa >= 1,000,000/s and >= 50x pyiso8583. Reports; fails only with BENCH_STRICT=1.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${KASSA_VENV:-/tmp/kassa-venv}"
target="${CARGO_TARGET_DIR:-$repo/target}"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check "pyiso8583==4.0.1"

(cd "$repo" && CARGO_TARGET_DIR="$target" cargo bench --quiet -p kassa-iso8583 --bench codec -- 'decode\+encode' >/dev/null)

estimate_ns() {
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["mean"]["point_estimate"])' \
        "$target/criterion/0200 sale/$1/new/estimates.json"
}
kassa_ns="$(estimate_ns 'decode+encode')"
kassa_reused_ns="$(estimate_ns 'decode+encode, buffers reused')"

cd "$here"
python_out="$("$venv/bin/python" bench.py 3)"
echo "$python_out"
pyiso_per_s="$(echo "$python_out" | sed -n 's/^pyiso8583 decode+encode\/s: //p')"

python3 - "$kassa_ns" "$kassa_reused_ns" "$pyiso_per_s" "${BENCH_STRICT:-0}" <<'PY'
import sys
kassa_ns, reused_ns, pyiso, strict = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1"
kassa, reused = 1e9 / kassa_ns, 1e9 / reused_ns
print(f"kassa decode+encode/s: {kassa:.0f} ({kassa_ns:.0f} ns)")
print(f"kassa decode+encode/s, buffers reused: {reused:.0f} ({reused_ns:.0f} ns)")
print(f"ratio kassa/pyiso8583: {kassa / pyiso:.0f}x (reused: {reused / pyiso:.0f}x)")
ok = kassa >= 1_000_000 and kassa / pyiso >= 50
print("targets (>= 1,000,000/s, >= 50x):", "met" if ok else "NOT met")
sys.exit(1 if strict and not ok else 0)
PY
