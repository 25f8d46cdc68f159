#!/usr/bin/env bash
# fuzz_smoke.sh FUZZ_BIN_DIR TARGET: every kept regression input once, then a
# few seconds of fuzzing from the seed corpus (scripts/fuzz runs longer).
# Fails when the fuzzer is missing or exits non-zero (a crash, a sanitizer
# report, a leak): pipefail, so that the `tail` that shortens the log cannot
# hide the fuzzer's exit status.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$1/fuzz/$2_fuzzer"
if [ ! -x "$bin" ]; then
  echo "no fuzzer at $bin" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$root/fuzz/corpus/$2"/* "$work"/
shopt -s nullglob
regressions=("$root/fuzz/regressions/$2"/*)
if [ ${#regressions[@]} -gt 0 ]; then "$bin" "${regressions[@]}"; fi
if ! "$bin" -max_total_time=5 -artifact_prefix="$work/" "$work" >"$work/fuzz.log" 2>&1; then
  tail -n 40 "$work/fuzz.log"
  echo "0 passed, 1 failed"
  exit 1
fi
tail -n 3 "$work/fuzz.log"
echo "1 passed, 0 failed"
