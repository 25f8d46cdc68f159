# For end-to-end shell tests: one lockboxd on a fresh database with the
# demo people, stopped when the test exits. Source it with the build
# directory as $1.
set -eu  # no pipefail: "| grep -q" may close a pipe early on purpose
: "${LOCKBOX_TEST_PG_URL:?run the tests through scripts/test}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="$(cd "$1" && pwd)"
BUF="$ROOT/tools/node_modules/.bin/buf"
WORK="$(mktemp -d /tmp/lockbox-e2e.XXXXXX)"
TD=lockbox.test
DB="lockbox_e2e_${RANDOM}${RANDOM}"
PID=""

cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  psql "$LOCKBOX_TEST_PG_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  psql "$LOCKBOX_TEST_PG_URL" -qc "DROP ROLE IF EXISTS ${DB}_app, ${DB}_owner" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; echo "--- lockboxd log (tail)" >&2; tail -20 "$WORK/lockboxd.log" >&2 || true; exit 1; }

# As in production (docs/OPERATIONS.md): the database owned by an owner role
# that runs `lockboxd migrate`, lockboxd serving as a runtime role that owns
# nothing (both with the cluster's password, on the private socket only), a
# signing key file. Arguments are more lockboxd flags.
start_server() {
  psql "$LOCKBOX_TEST_PG_URL" -qc "CREATE ROLE ${DB}_owner LOGIN" -c "CREATE ROLE ${DB}_app LOGIN" \
    -c "CREATE DATABASE $DB OWNER ${DB}_owner" >/dev/null
  # The cluster's password (scripts/lib.sh pg_start): the superuser's SCRAM
  # verifier, copied; the URLs below keep its passfile.
  psql "$LOCKBOX_TEST_PG_URL" -q >/dev/null <<SQL
SELECT format('ALTER ROLE %I PASSWORD %L', r, rolpassword)
  FROM pg_authid, unnest(ARRAY['${DB}_owner', '${DB}_app']) AS r
 WHERE rolname = current_user \gexec
SQL
  local su_url="${LOCKBOX_TEST_PG_URL/\/\/\/postgres/\/\/\/$DB}"
  OWNER_URL="${su_url/user=postgres/user=${DB}_owner}"
  DB_URL="${su_url/user=postgres/user=${DB}_app}"
  "$ROOT/scripts/make-certs" "$WORK/certs" "$TD" admin=operator/admin alice=operator/alice \
    bob=operator/bob dana=tenant/contoso/user/dana enforcer=service/enforcer >/dev/null
  openssl genpkey -algorithm ed25519 -out "$WORK/audit-signing.pem" 2>/dev/null
  "$BUILD/server/lockboxd" migrate --migration-database-url "$OWNER_URL" --runtime-role "${DB}_app" \
    2>"$WORK/migrate.log" || { cat "$WORK/migrate.log" >&2; fail "lockboxd migrate"; }
  "$BUILD/server/lockboxd" --listen 127.0.0.1:0 --health-listen 127.0.0.1:0 \
    --tls-cert "$WORK/certs/server.crt" --tls-key "$WORK/certs/server.key" \
    --tls-client-ca "$WORK/certs/ca.crt" --trust-domain "$TD" --database-url "$DB_URL" \
    --audit-signing-key "$WORK/audit-signing.pem" \
    --bootstrap-admin "spiffe://$TD/operator/admin" "$@" 2>"$WORK/lockboxd.log" &
  PID=$!
  for _ in $(seq 1 100); do
    PORT="$(sed -n 's/.*"lockboxd serving","port":\([0-9]*\),"health_port":\([0-9]*\).*/\1/p' "$WORK/lockboxd.log")"
    HEALTH_PORT="$(sed -n 's/.*"health_port":\([0-9]*\).*/\1/p' "$WORK/lockboxd.log")"
    [ -n "$PORT" ] && break
    kill -0 "$PID" 2>/dev/null || fail "lockboxd exited"
    sleep 0.1
  done
  [ -n "$PORT" ] || fail "lockboxd did not start"
  export LOCKBOX_TARGET="localhost:$PORT" LOCKBOX_CA="$WORK/certs/ca.crt"
}

# ctl WHO ARGS...: lockboxctl as WHO.
ctl() {
  local who="$1"; shift
  LOCKBOX_CERT="$WORK/certs/$who.crt" LOCKBOX_KEY="$WORK/certs/$who.key" "$BUILD/client/lockboxctl" "$@"
}

# The demo tenant: contoso with a protected environment prod. Its CA bundle
# is make-certs' tenant CA and dana its first tenant.admin, as the harness's
# TenantRequest does for the C++ tests.
seed() {
  ctl admin tenants create contoso --display-name "Contoso Ltd" \
    --ca-bundle "$WORK/certs/tenant-contoso-ca.crt" \
    --first-admin "spiffe://$TD/tenant/contoso/user/dana" >/dev/null
  wait_trusted dana contoso
  ctl admin environments create contoso prod --data-source sql:sql_database \
    --data-source rcs:storage_account:unsupported >/dev/null
  ctl admin bindings create "spiffe://$TD/operator/alice" operator.engineer >/dev/null
  ctl admin bindings create "spiffe://$TD/operator/bob" operator.reviewer >/dev/null
  ctl admin bindings create "spiffe://$TD/service/enforcer" service.enforcer >/dev/null
  ctl dana policy set contoso --enabled true >/dev/null
}

# wait_trusted WHO TENANT: until WHO (a user of TENANT) gets through: the
# server trusts a new tenant's CA within a couple of seconds.
wait_trusted() {
  for _ in $(seq 1 100); do
    ctl "$1" tenants get "$2" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  fail "$1 is not trusted after creating tenant $2"
}

# pending STAGE: the newest pending request of contoso in STAGE, waiting for it.
pending() {
  for _ in $(seq 1 100); do
    local n
    n="$(ctl bob --json requests list contoso --filter "state = PENDING AND stage = $1" |
      sed -n 's/^ *"name": "\(tenants[^"]*accessRequests[^"]*\)",$/\1/p' | head -n 1)"
    [ -n "$n" ] && { echo "$n"; return; }
    sleep 0.1
  done
}
