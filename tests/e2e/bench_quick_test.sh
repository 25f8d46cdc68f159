#!/usr/bin/env bash
# scripts/bench --quick as a smoke test: every figure is produced (targets
# are the benchmark's business, not the test's). Usage: bench_quick_test.sh BUILD_DIR
set -euo pipefail
build="$1"
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
"$root/scripts/bench" --quick --build-dir "$build" --output "$build/PERFORMANCE-quick.md" | tee "$out"
for name in checkaccess_vs_floor_ratio checkaccess_under_abuse_ratio \
    checkaccess_vs_health_ratio checkaccess_p99_ms lifecycle_per_s \
    lifecycle_vs_pgbench_ratio wakeup_p99_ms watchers_10k_rss_mb watchers_10k_threads \
    scale_checkaccess_p99_ratio scale_list_p99_ratio scale_audit_time_p99_ratio \
    scale_audit_request_p99_ratio verify_events_per_s verify_vs_pgbench_read_ratio \
    unwrap_per_s unwrap_p99_ms pkcs11_unwrap_per_s unwrap_vs_pkcs11_ratio; do
  grep -Eq "^$name: [0-9]+(\.[0-9]+)?$" "$out" || { echo "missing or not a number: $name" >&2; exit 1; }
done
grep -q '| checkaccess_vs_floor_ratio |' "$build/PERFORMANCE-quick.md"
echo "all figures produced"
