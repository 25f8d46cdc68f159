#!/usr/bin/env bash
# fuzz_smoke.sh FUZZ_BIN_DIR TARGET: every kept regression input once, then a
# few seconds of fuzzing from the seed corpus (scripts/fuzz runs longer).
set -eu
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$1/fuzz/$2_fuzzer"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$root/fuzz/corpus/$2"/* "$work"/
shopt -s nullglob
regressions=("$root/fuzz/regressions/$2"/*)
if [ ${#regressions[@]} -gt 0 ]; then "$bin" "${regressions[@]}"; fi
"$bin" -max_total_time=5 -artifact_prefix="$work/" "$work" 2>&1 | tail -n 3
echo "1 passed, 0 failed"
