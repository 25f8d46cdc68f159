#!/usr/bin/env bash
# ctest's entry to the failover test (tests/integration/failover_integration_test.cc):
# starts a pg_auto_failover formation of its own, runs the test against it,
# and stops the formation whatever happens (trap), printing the nodes' logs
# when the test failed.
#   failover_test.sh BUILD_DIR
# Skipped (exit 77) when LOCKBOX_SKIP_FAILOVER is set, for quicker local runs.
set -euo pipefail
build="$1"
here="$(cd "$(dirname "$0")" && pwd)"
if [ -n "${LOCKBOX_SKIP_FAILOVER:-}" ]; then
  echo "skipped: LOCKBOX_SKIP_FAILOVER is set"
  exit 77
fi
command -v pg_autoctl >/dev/null || { echo "pg_autoctl is missing (postgresql-15-auto-failover)"; exit 1; }

dir="$(mktemp -d /tmp/lockbox-failover.XXXXXX)"
status=1
test_pid=""
cleanup() {
  # The test and the lockboxd replicas it forked (one process group), even
  # if it crashed and left them behind.
  if [ -n "$test_pid" ] && [ "$status" != 0 ]; then
    kill -TERM -- "-$test_pid" 2>/dev/null || true
    sleep 1
    kill -KILL -- "-$test_pid" 2>/dev/null || true
  fi
  if [ "$status" != 0 ]; then
    for f in "$dir"/*.log; do
      [ -f "$f" ] || continue
      echo "---- $(basename "$f") (last 40 lines)"
      tail -n 40 "$f"
    done
  fi
  "$here/formation.sh" stop "$dir" || true
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

echo "starting a pg_auto_failover formation in $dir"
LOCKBOX_TEST_PG_URL="$("$here/formation.sh" start "$dir")"
export LOCKBOX_TEST_PG_URL LOCKBOX_TEST_FAILOVER_DIR="$dir" \
  LOCKBOX_TEST_FAILOVER_FORMATION="$here/formation.sh"
echo "formation: $LOCKBOX_TEST_PG_URL"
# Its own process group (setsid: not a group leader here, so it does not
# fork), bounded below ctest's timeout so that this trap always runs.
setsid timeout --kill-after=10 540 "$build/tests/failover_integration_test" &
test_pid=$!
set +e
wait "$test_pid"
status=$?
set -e
exit "$status"
