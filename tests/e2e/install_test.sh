#!/usr/bin/env bash
# cmake --install, then programs outside the tree built against the
# installed package with find_package(lockbox) and with pkg-config: a client
# run against a real server, and an offline verifier (lockbox::audit alone)
# given a chain of its own, then the server's export, then that export changed.
source "$(dirname "$0")/lib.sh" "$1"
start_server
cmake --install "$BUILD" --prefix "$WORK/prefix" >/dev/null
# A sanitized build's libraries need the sanitizer runtime in the consumer too.
san=""
grep -q "^LOCKBOX_SANITIZE:BOOL=ON" "$BUILD/CMakeCache.txt" && san="-fsanitize=address,undefined"
cmake -S "$ROOT/tests/install/consumer" -B "$WORK/consumer" -G Ninja \
  -DCMAKE_PREFIX_PATH="$WORK/prefix" -DCMAKE_CXX_FLAGS="$san" >/dev/null || fail "find_package(lockbox)"
cmake --build "$WORK/consumer" >/dev/null || fail "building against the installed package"
"$WORK/consumer/consumer" "localhost:$PORT" "$WORK/certs/ca.crt" "$WORK/certs/admin.crt" \
  "$WORK/certs/admin.key" | grep -q "tenants: 0" || fail "the CMake consumer did not run"
export PKG_CONFIG_PATH="$WORK/prefix/lib/pkgconfig"
g++ -std=c++17 $san "$ROOT/tests/install/consumer/main.cc" -o "$WORK/pc-consumer" \
  $(pkg-config --cflags --libs lockbox) || fail "building with pkg-config"
"$WORK/pc-consumer" "localhost:$PORT" "$WORK/certs/ca.crt" "$WORK/certs/admin.crt" \
  "$WORK/certs/admin.key" | grep -q "tenants: 0" || fail "the pkg-config consumer did not run"
g++ -std=c++17 $san "$ROOT/tests/install/consumer/verify.cc" -o "$WORK/pc-audit-verify" \
  $(pkg-config --cflags --libs lockbox-audit) || fail "building the verifier with pkg-config"

for verify in "$WORK/consumer/audit_verify" "$WORK/pc-audit-verify"; do
  "$verify" --self-test | grep -q "^self-test: OK" || fail "$verify --self-test"
done
seed
ctl dana audit checkpoint contoso >/dev/null || fail "audit checkpoint"
ctl dana audit export contoso --output "$WORK/audit.jsonl" >/dev/null || fail "audit export"
ctl dana audit public-key >"$WORK/audit-key.pem" || fail "audit public-key"
grep -q '^{"checkpoint":' "$WORK/audit.jsonl" || fail "the export has no checkpoint"
# The first event that names dana, changed as a tamperer would.
sed '0,/contoso\/user\/dana/s//contoso\/user\/mallory/' "$WORK/audit.jsonl" >"$WORK/tampered.jsonl"
cmp -s "$WORK/audit.jsonl" "$WORK/tampered.jsonl" && fail "the export was not changed"
for verify in "$WORK/consumer/audit_verify" "$WORK/pc-audit-verify"; do
  out="$("$verify" "$WORK/audit.jsonl" "$WORK/audit-key.pem")" || fail "$verify: $out"
  echo "$out" | grep -q "^OK: verified [1-9][0-9]* events and [1-9][0-9]* signed checkpoints" ||
    fail "$verify: $out"
  rc=0
  out="$("$verify" "$WORK/tampered.jsonl" "$WORK/audit-key.pem")" || rc=$?
  [ "$rc" = 1 ] && echo "$out" | grep -q "^TAMPERED: first bad event tenants/contoso/auditEvents/" ||
    fail "$verify did not catch the change (exit $rc): $out"
done
echo "1 passed, 0 failed"
