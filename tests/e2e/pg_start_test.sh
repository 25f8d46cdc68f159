#!/usr/bin/env bash
# scripts/lib.sh pg_start converting a cluster an older pg_start made (trust
# auth) to SCRAM: afterwards the passfile's password logs in, and no psql it
# ran had that password on its command line (/proc/*/cmdline is readable by
# every local user).
set -eu
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
source "$ROOT/scripts/lib.sh"
WORK="$(mktemp -d /tmp/lockbox-pgstart.XXXXXX)"
chmod 755 "$WORK"  # the cluster's OS user reaches its directory
dir="$WORK/pg"
cleanup() { pg_stop "$dir" >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# A cluster as the older pg_start left it: trust for local connections.
mkdir -p "$dir"; chmod 700 "$dir"
if [ "$(id -u)" = 0 ]; then chown "$(pg_user)" "$dir"; fi
as_pg "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=reject -E UTF8 >/dev/null

# Every psql pg_start runs records its arguments.
mkdir -p "$WORK/bin"
real_psql="$(command -v psql)"
cat > "$WORK/bin/psql" <<WRAP
#!/bin/sh
printf '%s\n' "\$*" >> "$WORK/psql-args"
exec "$real_psql" "\$@"
WRAP
chmod 755 "$WORK/bin/psql"
url="$(PATH="$WORK/bin:$PATH" pg_start "$dir" fast)"

password="$(cut -d: -f5- "$dir/pgpass")"
[ -s "$WORK/psql-args" ] || fail "pg_start ran no psql: the legacy conversion was not taken"
if grep -qF "$password" "$WORK/psql-args"; then fail "the password was on psql's command line"; fi
as_pg grep -Eq '^local[[:space:]]+all[[:space:]]+all[[:space:]]+scram-sha-256' "$dir/data/pg_hba.conf" ||
  fail "pg_hba.conf not converted to scram-sha-256"
[ "$(psql "$url" -qtAc 'SELECT 1')" = 1 ] || fail "the passfile's password does not log in"
bad="postgresql:///postgres?host=$dir/run&user=postgres&password=wrong"
if PGPASSFILE=/dev/null psql "$bad" -qtAc 'SELECT 1' >/dev/null 2>&1; then
  fail "a wrong password logs in: SCRAM is not enforced"
fi
echo "pg_start converts a trust cluster without the password on a command line: ok"
