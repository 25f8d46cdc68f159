#!/usr/bin/env bash
# lockboxd's settings: every one a flag, a LOCKBOX_<NAME> variable and a
# config file key; flag over environment over file over default; errors that
# name the setting; --help with the defaults. Uses --check-config, which
# validates and prints the settings without connecting to anything.
set -eu
BUILD="$(cd "$1" && pwd)"
LOCKBOXD="$BUILD/server/lockboxd"
WORK="$(mktemp -d /tmp/lockbox-config.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# --check-config only reads that the files exist; contents do not matter.
touch "$WORK/server.crt" "$WORK/server.key" "$WORK/ca.crt" "$WORK/audit.pem"
base=(--tls-cert "$WORK/server.crt" --tls-key "$WORK/server.key" --tls-client-ca "$WORK/ca.crt"
      --trust-domain example.org --database-url "postgresql://lockbox:hunter2@db1,db2/lockbox?target_session_attrs=read-write"
      --audit-signing-key "$WORK/audit.pem")
check() { env -i PATH="$PATH" "$@" "$LOCKBOXD" "${base[@]}" --check-config "${extra[@]}"; }
value() { sed -n "s/^$1=\(.*\)\$/\1/p; s/^$1 = \(.*\)\$/\1/p" | head -1; }

# Precedence: flag > environment > file > default.
printf 'db-pool-size = 3\nlog-format = "text"\n' > "$WORK/lockboxd.toml"
extra=(--config "$WORK/lockboxd.toml" --db-pool-size 7)
[ "$(check LOCKBOX_DB_POOL_SIZE=5 | value db-pool-size)" = 7 ] || fail "a flag must win over the environment and the file"
extra=(--config "$WORK/lockboxd.toml")
[ "$(check LOCKBOX_DB_POOL_SIZE=5 | value db-pool-size)" = 5 ] || fail "the environment must win over the file"
[ "$(check | value db-pool-size)" = 3 ] || fail "the file must win over the default"
[ "$(check | value log-format)" = '"text"' ] || fail "log-format from the file: $(check | value log-format)"
extra=()
[ "$(check | value db-pool-size)" = 8 ] || fail "default db-pool-size is 8"
# The file itself may come from the environment.
[ "$(check LOCKBOX_CONFIG="$WORK/lockboxd.toml" | value db-pool-size)" = 3 ] || fail "LOCKBOX_CONFIG"

# Every setting of SPEC section 6 is a flag, and each has its variable.
help="$("$LOCKBOXD" --help)"
for flag in listen tls-cert tls-key tls-client-ca trust-domain database-url bootstrap-admin \
    health-listen metrics-listen smtp-url log-format config; do
  echo "$help" | grep -q -- "--$flag" || fail "--help does not list --$flag"
  env="LOCKBOX_$(echo "$flag" | tr 'a-z-' 'A-Z_')"
  echo "$help" | grep -q "$env" || fail "--help does not name $env"
done
echo "$help" | grep -q '0.0.0.0:8443' || fail "--help does not show the default of --listen"
# The moved clock is a test build's switch only: the released lockboxd has none.
if echo "$help" | grep -qi 'testing'; then fail "the released --help mentions a testing switch"; fi
extra=(--testing-clock-offset-file "$WORK/offset")
if check >/dev/null 2>&1; then fail "the released lockboxd accepts --testing-clock-offset-file"; fi
extra=()
testing="$BUILD/tests/lockboxd-testing"
if [ -x "$testing" ]; then
  "$testing" --help | grep -q -- '--testing-clock-offset-file' ||
    fail "the test build lockboxd-testing lacks --testing-clock-offset-file"
fi

# The database password never appears; the rest of the URL does.
out="$(check)"
echo "$out" | grep -q hunter2 && fail "--check-config printed the database password"
echo "$out" | grep -q 'lockbox:REDACTED@db1,db2' || fail "database-url not shown redacted: $out"
extra=(--migration-database-url "postgresql://owner:s3cret@db1/lockbox")
out="$(check)"
echo "$out" | grep -q s3cret && fail "--check-config printed the migration database password"
echo "$out" | grep -q 'owner:REDACTED@db1' || fail "migration-database-url not shown redacted: $out"
# A quoted libpq value goes whole; the SMTP URL's password too.
extra=(--migration-database-url "host=db1 user=owner password='s3cr et' dbname=lockbox"
       --smtp-url "smtp://mailer:m41lpw@mail.example.org:587")
out="$(check)"
echo "$out" | grep -qE "s3cr|et'|m41lpw" && fail "--check-config printed a quoted or SMTP password: $out"
echo "$out" | grep -q "password=REDACTED dbname=lockbox" || fail "keyword database URL not shown redacted: $out"
echo "$out" | grep -q 'mailer:REDACTED@mail.example.org' || fail "smtp-url not shown redacted: $out"
extra=()

# The signing key is a file, required: only the development switch does
# without one. `lockboxd migrate` is a step of its own.
expect_key_error() {
  if env -i PATH="$PATH" "$LOCKBOXD" "${base[@]:0:10}" --check-config "$@" >/dev/null 2>"$WORK/err"; then
    fail "accepted without --audit-signing-key: $*"
  fi
  grep -q -- "--audit-signing-key" "$WORK/err" || fail "the error does not name --audit-signing-key: $(cat "$WORK/err")"
}
expect_key_error
env -i PATH="$PATH" "$LOCKBOXD" "${base[@]:0:10}" --dev-ephemeral-audit-key --check-config >/dev/null ||
  fail "--dev-ephemeral-audit-key is refused"
"$LOCKBOXD" migrate --help | grep -q -- --runtime-role || fail "lockboxd migrate --help lacks --runtime-role"
"$LOCKBOXD" migrate --help | grep -q LOCKBOX_MIGRATION_DATABASE_URL ||
  fail "lockboxd migrate --help does not name LOCKBOX_MIGRATION_DATABASE_URL"

# Errors name the setting and change nothing.
expect_error() {  # expect_error NAME-IN-MESSAGE COMMAND...
  local name="$1"; shift
  if "$@" > "$WORK/out" 2> "$WORK/err"; then fail "accepted: $*"; fi
  grep -q -- "$name" "$WORK/err" || fail "the error does not name $name: $(cat "$WORK/err")"
}
extra=(--db-pool-size 0)
expect_error db-pool-size check
extra=()
expect_error log-format check LOCKBOX_LOG_FORMAT=xml
extra=(--listen nonsense)
expect_error listen check
extra=(--metrics-listen 127.0.0.1:99999)
expect_error metrics-listen check
extra=(--smtp-url http://mail)
expect_error smtp-url check
printf 'colour = "blue"\n' > "$WORK/bad.toml"
extra=(--config "$WORK/bad.toml")
expect_error colour check
extra=()
expect_error tls-cert env -i PATH="$PATH" "$LOCKBOXD" --tls-cert "$WORK/missing.crt" \
  --tls-key "$WORK/server.key" --tls-client-ca "$WORK/ca.crt" --trust-domain example.org \
  --database-url postgresql:///x --check-config
expect_error trust-domain env -i PATH="$PATH" "$LOCKBOXD" --tls-cert "$WORK/server.crt" \
  --tls-key "$WORK/server.key" --tls-client-ca "$WORK/ca.crt" --database-url postgresql:///x --check-config
echo "config: ok"
