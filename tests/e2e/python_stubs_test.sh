#!/usr/bin/env bash
# Other languages: Python stubs generated from proto/ with Debian's
# grpc_python_plugin run the whole life over mTLS.
source "$(dirname "$0")/lib.sh" "$1"
start_server
seed
mkdir -p "$WORK/py"
protoc -I "$ROOT/proto" -I /usr/include --python_out="$WORK/py" --grpc_out="$WORK/py" \
  --plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin "$ROOT"/proto/lockbox/v1/*.proto
# Debian's python3, which has Debian's grpcio (not a pyenv or venv one).
PYTHONPATH="$WORK/py" /usr/bin/python3 "$ROOT/tests/e2e/whole_life.py" "localhost:$PORT" \
  "$WORK/certs" "$TD" || fail "whole_life.py"
echo "1 passed, 0 failed"
