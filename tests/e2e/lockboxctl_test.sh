#!/usr/bin/env bash
# lockboxctl end to end: an engineer waits, a reviewer and the customer
# approve, the engineer's command returns 0 with the grant; a denial returns 3.
source "$(dirname "$0")/lib.sh" "$1"
start_server
seed

ctl alice request create contoso prod --ticket TKT-7 --justification "invoices stuck" \
  --data-source sql --wait --wait-timeout 2m >"$WORK/wait.out" 2>"$WORK/wait.err" &
WAITER=$!
name="$(pending INTERNAL_REVIEW)"
[ -n "$name" ] || fail "the request never appeared"
ctl bob approve "$name" --comment "ticket checked" >/dev/null
ctl dana requests list contoso | grep -q "Action needed" || fail "no Action needed for the customer"
ctl dana approve "$name" >/dev/null
wait "$WAITER" || fail "request create --wait exited $?"
grep -q "Access granted until" "$WORK/wait.out" || fail "no grant printed: $(cat "$WORK/wait.out")"
grep -q "waiting for a decision on $name" "$WORK/wait.err" || fail "--wait did not say what it waits for"
grant="$(grep -o 'tenants/contoso/grants/[0-9a-f-]*' "$WORK/wait.out" | head -n 1)"
ctl enforcer check "spiffe://$TD/operator/alice" tenants/contoso/environments/prod --data-source sql |
  grep -q "^allowed" || fail "check did not allow"
ctl alice --json grants contoso | grep -q '"state": "ACTIVE"' || fail "grants --json"
ctl alice release "$grant" >/dev/null
set +e
ctl enforcer check "spiffe://$TD/operator/alice" tenants/contoso/environments/prod >/dev/null
[ $? -eq 7 ] || fail "check after release should exit 7"

ctl alice request create contoso prod --operator-initiated --justification "deny me" \
  --wait --wait-timeout 2m >/dev/null 2>&1 &
WAITER=$!
set -e
name="$(pending INTERNAL_REVIEW)"
ctl bob deny "$name" --comment "no ticket" >/dev/null
set +e
wait "$WAITER"
rc=$?
set -e
[ "$rc" -eq 3 ] || fail "a denied wait should exit 3, got $rc"

set +e
ctl alice approve "$grant" >/dev/null 2>&1; [ $? -eq 9 ] || fail "a bad name should exit 9"
ctl alice tenants create nope >/dev/null 2>&1; [ $? -eq 7 ] || fail "permission denied should exit 7"
ctl alice --no-such-flag >/dev/null 2>&1; [ $? -eq 1 ] || fail "a usage error should exit 1"
set -e
ctl dana audit verify contoso | grep -q "^OK: verified" || fail "audit verify"
ctl dana audit list contoso --filter "action = access_request.deny" | grep -q access_request.deny ||
  fail "audit list"
ctl dana notifications list contoso >/dev/null || fail "notifications list"
ctl dana --json notifications list contoso --failed >/dev/null || fail "notifications list --failed"
for cmd in "" tenants policy environments bindings request requests approve deny cancel grants \
           grant release revoke check audit "audit list" "audit verify" "request create" \
           notifications "notifications list"; do
  ctl alice $cmd --help >/dev/null || fail "lockboxctl $cmd --help"
done
echo "1 passed, 0 failed"
