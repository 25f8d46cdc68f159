#!/usr/bin/env bash
# cmake --install, then a program outside the tree built against the
# installed package with find_package(lockbox) and with pkg-config, run
# against a real server.
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
echo "1 passed, 0 failed"
