#!/usr/bin/env bash
# lockboxctl encryption-policy end to end: lockboxd with a SoftHSM2 token
# for contoso, the tenant's admin creating, reading, updating, disabling,
# enabling and rotating its policy; the provider refused; the environment
# showing which key protects each data source.
source "$(dirname "$0")/lib.sh"
source "$ROOT/scripts/lib.sh"

HSM="$WORK/softhsm"
softhsm_token "$HSM" contoso-hsm contoso
softhsm_aes_key "$HSM" contoso-hsm cmk
softhsm_aes_key "$HSM" contoso-hsm cmk2
softhsm_token "$HSM" other-hsm other
softhsm_aes_key "$HSM" other-hsm cmk
start_server --pkcs11-module "$SOFTHSM_MODULE" --pkcs11-pin-dir "$HSM/pins"
seed

KEY="pkcs11:token=contoso-hsm;object=cmk;type=secret-key"
POLICY=tenants/contoso/encryptionPolicies/main

# The provider may not create it; another tenant's token is not contoso's.
set +e
ctl admin encryption-policy create contoso main --key-uri "$KEY" --environment prod >/dev/null 2>&1
rc=$?
[ "$rc" -eq 7 ] || fail "lockbox.admin creating a customer's policy: exit $rc, want 7"
ctl dana encryption-policy create contoso main --key-uri "pkcs11:token=other-hsm;object=cmk" \
  --environment prod >"$WORK/other.out" 2>&1
rc=$?
set -e
[ "$rc" -ne 0 ] || fail "contoso wrapped under another tenant's token"
grep -q KEY_UNAVAILABLE "$WORK/other.out" || fail "other token: $(cat "$WORK/other.out")"

ctl dana encryption-policy create contoso main --key-uri "$KEY" --environment prod \
  --display-name "Contoso CMK" >"$WORK/create.out" || fail "create: $(cat "$WORK/create.out")"
grep -q "State:          ACTIVE" "$WORK/create.out" || fail "create: $(cat "$WORK/create.out")"
grep -q "1 (primary)" "$WORK/create.out" || fail "create: no version 1"
ctl dana encryption-policy list contoso | grep -q "^main " || fail "list"
ctl dana environments get contoso prod | grep -q "key: customer ($POLICY)" ||
  fail "prod does not show the customer's key: $(ctl dana environments get contoso prod)"

ctl dana encryption-policy disable contoso/main >"$WORK/disable.out" 2>&1 ||
  fail "disable: $(cat "$WORK/disable.out")"
grep -q "State:          DISABLED" "$WORK/disable.out" || fail "disable: $(cat "$WORK/disable.out")"
ctl dana encryption-policy enable contoso/main | grep -q "State:          ACTIVE" || fail "enable"
ctl dana encryption-policy rotate "$POLICY" --key-uri "pkcs11:token=contoso-hsm;object=cmk2" |
  grep -q "2 (primary)" || fail "rotate"
ctl dana --json encryption-policy get contoso/main | grep -q '"primaryVersion": 2' ||
  fail "get after rotate"
ctl dana encryption-policy update contoso/main --no-environments | grep -q "Environments:   -" ||
  fail "update"
ctl dana environments get contoso prod | grep -q "key: provider" || fail "prod not back on provider"
ctl dana audit list contoso --filter 'action = "encryption_policy.rotate"' | grep -q rotate ||
  fail "rotation not audited"
echo "PASS encryption_policy e2e"
