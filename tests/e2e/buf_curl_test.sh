#!/usr/bin/env bash
# buf curl with server reflection and nothing but the CA and a client
# certificate: health and real RPCs.
source "$(dirname "$0")/lib.sh" "$1"
start_server
curl_as() {
  local who="$1"; shift
  "$BUF" curl --protocol grpc --cacert "$WORK/certs/ca.crt" --cert "$WORK/certs/$who.crt" \
    --key "$WORK/certs/$who.key" "$@"
}
curl_as alice "https://localhost:$PORT/grpc.health.v1.Health/Check" | grep -q SERVING ||
  fail "health over mTLS"
curl_as admin --list-methods "https://localhost:$PORT" | grep -q "lockbox.v1.AccessRequestService/WatchAccessRequest" ||
  fail "reflection does not list the API"
"$ROOT/scripts/make-certs" "$WORK/certs" "$TD" --tenant-ca fabrikam
create="$(python3 -c 'import json, sys
print(json.dumps({"tenant_id": "fabrikam", "tenant": {"display_name": "Fabrikam"},
                  "identity": {"ca_bundle_pem": open(sys.argv[1]).read()},
                  "first_admin": {"principal": sys.argv[2]}}))' \
  "$WORK/certs/tenant-fabrikam-ca.crt" "spiffe://$TD/tenant/fabrikam/user/fay")"
curl_as admin -d "$create" \
  "https://localhost:$PORT/lockbox.v1.PolicyService/CreateTenant" | grep -q '"name": "tenants/fabrikam"' ||
  fail "CreateTenant"
curl_as admin -d '{}' "https://localhost:$PORT/lockbox.v1.PolicyService/ListTenants" |
  grep -q fabrikam || fail "ListTenants"
# A valid request from someone who is not lockbox.admin.
create_x="$(echo "$create" | sed -e 's/"tenant_id": "fabrikam"/"tenant_id": "x"/' -e 's#/tenant/fabrikam/#/tenant/x/#')"
out="$(curl_as alice -d "$create_x" "https://localhost:$PORT/lockbox.v1.PolicyService/CreateTenant" 2>&1 || true)"
echo "$out" | grep -q permission_denied || fail "expected permission_denied: $out"
echo "1 passed, 0 failed"
