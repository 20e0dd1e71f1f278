#!/usr/bin/env bash
# Generate the grpcio Python stubs for the sidecar from proto/ (the single source of truth).
# Output: sidecar/sahara_sidecar/_gen/ (git-ignored; generated, never edited). Idempotent.
#
#   _gen/sahara/v1/sahara_pb2*.py   importable as `sahara.v1.sahara_pb2` with _gen/ on sys.path
#   _gen/health/health_pb2*.py      importable as `health_pb2` with _gen/health/ on sys.path
#
# The health proto is generated from its own directory on purpose: generated as
# grpc/health/v1/health_pb2.py it would be imported as `grpc.health.v1`, and the `grpc`
# package of grpcio would shadow it. The wire names (grpc.health.v1.Health) come from the
# proto package, so they are unchanged. sahara_sidecar/protos.py sets up sys.path.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
python="${SAHARA_PYTHON:-${PYTHON:-$here/.venv/bin/python}}"
out="$here/sahara_sidecar/_gen"

rm -rf "$out"
mkdir -p "$out/health"

"$python" -m grpc_tools.protoc -I "$root/proto" \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  "$root/proto/sahara/v1/sahara.proto"

"$python" -m grpc_tools.protoc -I "$root/proto/grpc/health/v1" \
  --python_out="$out/health" --pyi_out="$out/health" --grpc_python_out="$out/health" \
  "$root/proto/grpc/health/v1/health.proto"

echo "generated stubs in $out" >&2
