"""The generated gRPC stubs, made importable.

`gen_protos.sh` writes them to `_gen/` (git-ignored). The generated modules import each
other by absolute name (`sahara.v1.sahara_pb2`, `health_pb2`), so their directories go on
sys.path here; the health stubs live in their own directory so that grpcio's `grpc`
package is never shadowed. Import the stubs from this module only.
"""

from __future__ import annotations

import sys
from pathlib import Path

_GEN = Path(__file__).resolve().parent / "_gen"

if not (_GEN / "sahara" / "v1" / "sahara_pb2.py").exists() or not (_GEN / "health" / "health_pb2.py").exists():
    raise ImportError(f"gRPC stubs not found in {_GEN}; run sidecar/gen_protos.sh first")

for _path in (_GEN, _GEN / "health"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import health_pb2  # noqa: E402
import health_pb2_grpc  # noqa: E402
from sahara.v1 import sahara_pb2, sahara_pb2_grpc  # noqa: E402

__all__ = ["health_pb2", "health_pb2_grpc", "sahara_pb2", "sahara_pb2_grpc"]
