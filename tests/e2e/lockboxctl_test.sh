#!/usr/bin/env bash
# lockboxctl end to end: an engineer waits, a reviewer and the customer
# approve, the engineer's command returns 0 with the grant; a denial returns 3.
# Requests and grants are named as the lists print them: the ID alone, or
# TENANT/ID, or the full name.
source "$(dirname "$0")/lib.sh" "$1"
start_server
seed

ctl alice request create contoso prod --ticket TKT-7 --justification "invoices stuck" \
  --data-source sql --wait --wait-timeout 2m >"$WORK/wait.out" 2>"$WORK/wait.err" &
WAITER=$!
name="$(pending INTERNAL_REVIEW)"
[ -n "$name" ] || fail "the request never appeared"
# The ID as the table prints it, in its first column.
id="$(ctl bob requests list contoso --filter "state = PENDING AND stage = INTERNAL_REVIEW" |
  awk 'NR == 2 { print $1 }')"
[ "tenants/contoso/accessRequests/$id" = "$name" ] || fail "requests list printed '$id' for $name"
ctl bob approve "$id" --comment "ticket checked" >/dev/null || fail "approve by the listed ID"
ctl bob request get "$id" | grep -q "^Decision:       APPROVE at INTERNAL_REVIEW by " ||
  fail "request get by the listed ID"
ctl dana requests list contoso | grep -q "Action needed" || fail "no Action needed for the customer"
ctl dana approve "contoso/$id" >/dev/null || fail "approve by TENANT/ID"
wait "$WAITER" || fail "request create --wait exited $?"
grep -q "Access granted until" "$WORK/wait.out" || fail "no grant printed: $(cat "$WORK/wait.out")"
grep -q "waiting for a decision on $name" "$WORK/wait.err" || fail "--wait did not say what it waits for"
# Not a terminal: whole lines, nothing to rewrite in place.
if grep -q $'[\r\033]' "$WORK/wait.err"; then fail "--wait wrote terminal controls to a file"; fi
grant="$(grep -o 'tenants/contoso/grants/[0-9a-f-]*' "$WORK/wait.out" | head -n 1)"
ctl enforcer check "spiffe://$TD/operator/alice" tenants/contoso/environments/prod --data-source sql |
  grep -q "^allowed" || fail "check did not allow"
ctl alice --json grants contoso | grep -q '"state": "ACTIVE"' || fail "grants --json"
ctl alice grants contoso | awk 'NR == 2 { print $1 }' | grep -qx "${grant##*/}" ||
  fail "grants did not print the grant's ID"
ctl alice grant "${grant##*/}" | grep -q "^$grant\$" || fail "grant by the listed ID"
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
ctl bob approve 00000000-0000-4000-8000-000000000000 2>"$WORK/nf.err" >/dev/null
[ $? -eq 8 ] || fail "an ID nobody has should exit 8"
grep -q "no access request with ID 00000000-0000-4000-8000-000000000000" "$WORK/nf.err" ||
  fail "an unknown ID should say so: $(cat "$WORK/nf.err")"
ctl alice tenants create nope --ca-bundle "$WORK/certs/tenant-contoso-ca.crt" \
  --first-admin "spiffe://$TD/tenant/nope/user/x" >/dev/null 2>&1; [ $? -eq 7 ] || fail "permission denied should exit 7"
ctl alice --no-such-flag >/dev/null 2>&1; [ $? -eq 1 ] || fail "a usage error should exit 1"
set -e
# A log this young has no checkpoint yet: sign its head, then verify.
ctl dana audit checkpoint contoso >/dev/null || fail "audit checkpoint"
ctl dana audit verify contoso | grep -q "^OK: verified" || fail "audit verify"
ctl dana audit list contoso --filter "action = access_request.deny" | grep -q access_request.deny ||
  fail "audit list"
ctl dana notifications list contoso >/dev/null || fail "notifications list"
ctl dana --json notifications list contoso --failed >/dev/null || fail "notifications list --failed"
# The tenant's identity: what was registered, its fingerprint as openssl
# computes it; changed by the tenant's admin only (exit 7 for lockbox.admin).
want="$(openssl x509 -in "$WORK/certs/tenant-contoso-ca.crt" -outform DER | sha256sum | cut -d' ' -f1)"
ctl dana tenants identity get contoso | grep -q "CA (SHA-256):   $want" ||
  fail "identity get: $(ctl dana tenants identity get contoso 2>&1)"
set +e
ctl admin tenants identity set contoso --ca-bundle "$WORK/certs/tenant-contoso-ca.crt" \
  >/dev/null 2>&1; [ $? -eq 7 ] || fail "lockbox.admin changing a tenant's identity should exit 7"
set -e
ctl dana tenants identity set contoso --ca-bundle "$WORK/certs/tenant-contoso-ca.crt" |
  grep -q "CA (SHA-256):   $want" || fail "identity set by the tenant's admin"
ctl dana audit list contoso --filter "action = tenant_identity.update" |
  grep -q tenant_identity.update || fail "identity change not audited"
# Scheduled access: a window an hour from now. --wait returns at approval
# with the grant SCHEDULED; check refuses with GRANT_NOT_STARTED until then.
set +e
ctl alice request create contoso prod --ticket TKT-8 --justification "tonight's window" \
  --start-time "not a time" >/dev/null 2>&1; [ $? -eq 9 ] || fail "a bad --start-time should exit 9"
set -e
start="$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)"
ctl alice request create contoso prod --ticket TKT-8 --justification "tonight's window" \
  --data-source sql --start-time "$start" --wait --wait-timeout 2m >"$WORK/sched.out" 2>/dev/null &
WAITER=$!
name="$(pending INTERNAL_REVIEW)"
[ -n "$name" ] || fail "the scheduled request never appeared"
ctl bob request get "$name" | grep -q "^Starts:         ${start/T/ }" ||
  fail "request get did not show the start: $(ctl bob request get "$name")"
ctl bob approve "$name" >/dev/null
ctl dana approve "$name" >/dev/null
wait "$WAITER" || fail "a scheduled request create --wait exited $?"
grep -q "Access scheduled from ${start/T/ }" "$WORK/sched.out" ||
  fail "--wait did not say the grant is scheduled: $(cat "$WORK/sched.out")"
grant="$(grep -o 'tenants/contoso/grants/[0-9a-f-]*' "$WORK/sched.out" | head -n 1)"
ctl alice grants contoso --filter "state = SCHEDULED" | grep -q "${grant##*/}.*SCHEDULED" ||
  fail "grants did not list the scheduled grant"
set +e
ctl enforcer check "spiffe://$TD/operator/alice" tenants/contoso/environments/prod \
  --data-source sql >"$WORK/check.out"
[ $? -eq 7 ] || fail "check before the start should exit 7"
set -e
grep -q "not allowed: GRANT_NOT_STARTED ($grant starts ${start/T/ })" "$WORK/check.out" ||
  fail "check did not say when the grant starts: $(cat "$WORK/check.out")"
ctl alice release "$grant" | grep -q RELEASED || fail "release of a scheduled grant"
# Quorum and narrowing (issue 17): the policy's new fields, how many
# approvals the customer's stage still needs, and an approval for less.
ctl dana policy update contoso --customer-approvals 2 --max-extensions 3 \
  --emergency-access forbidden --emergency-access-duration 2h |
  grep -q "^Approvals:      1 internal, 2 customer" || fail "policy update --customer-approvals"
ctl dana policy get contoso | grep -q "^Break-glass:    forbidden, at most 2 h" ||
  fail "policy get: $(ctl dana policy get contoso 2>&1)"
ctl alice request create contoso prod --operator-initiated --justification "two admins" \
  >/dev/null
quorum="$(pending INTERNAL_REVIEW)"
[ -n "$quorum" ] || fail "no request for the quorum"
ctl bob approve "$quorum" >/dev/null || fail "internal approval"
ctl dana requests list contoso | grep -q "Action needed (2 more)" || fail "no (2 more)"
ctl dana approve "$quorum" --access-duration 1h >/dev/null || fail "approve --access-duration"
ctl dana request get "$quorum" | grep -q "^Status:         Action needed (1 more)" ||
  fail "request get: $(ctl dana request get "$quorum" 2>&1)"
ctl dana request get "$quorum" | grep -q "^  narrowed:     period 60 min" || fail "narrowing not shown"
set +e
ctl dana approve "$quorum" >/dev/null 2>"$WORK/twice.err"; [ $? -eq 11 ] ||
  fail "approving twice should exit 11"
grep -q "ALREADY_APPROVED" "$WORK/twice.err" || fail "twice: $(cat "$WORK/twice.err")"
set -e
ctl alice cancel "$quorum" >/dev/null
for cmd in "" tenants policy environments bindings request requests approve deny cancel grants \
           grant release revoke check audit "audit list" "audit verify" "request create" \
           notifications "notifications list" "tenants identity" "tenants identity set" \
           breakglass "breakglass open" "breakglass list" "breakglass review"; do
  ctl alice $cmd --help >/dev/null || fail "lockboxctl $cmd --help"
done
echo "1 passed, 0 failed"
