#!/usr/bin/env bash
# Runs every fuzz target briefly; fails on the first crash. Usage: fuzz/run.sh [SECONDS_PER_TARGET]
# Works on the stable toolchain (cargo-fuzz needs nightly flags: RUSTC_BOOTSTRAP=1).
set -euo pipefail

seconds="${1:-15}"
here="$(cd "$(dirname "$0")" && pwd)"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${KASSA_FUZZ_TARGET_DIR:-/tmp/target-fuzz}"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

cd "$here"
targets="$(cargo fuzz list)"
for target in $targets; do
    corpus="/tmp/kassa-fuzz-corpus/$target"
    mkdir -p "$corpus"
    seeds=()
    if [ -d "$here/seeds/$target" ]; then
        seeds=("$here/seeds/$target")
    fi
    echo "fuzz: $target for ${seconds}s"
    cargo fuzz run "$target" "$corpus" "${seeds[@]}" -- -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=0
done
echo "fuzz: $(echo $targets | wc -w) targets, no crash"
