"""An unexpected failure inside a request becomes INTERNAL, and the server goes on serving."""

from __future__ import annotations

import grpc
import pytest

from sahara_sidecar import server as server_module
from sahara_sidecar.protos import sahara_pb2, sahara_pb2_grpc


def test_internal_error_then_still_serving(tiny_lms, monkeypatch):
    grpc_server, port, _ = server_module.build_server(tiny_lms["mistral"], port=0)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = sahara_pb2_grpc.AblationServiceStub(channel)
            request = sahara_pb2.ForwardRequest(prompts=["hi"], specs=[sahara_pb2.AblationSpec()], return_logprobs=True)

            def broken(*_args, **_kwargs):
                raise RuntimeError("CUDA out of memory (simulated)")

            monkeypatch.setattr(server_module, "run_forward", broken)
            with pytest.raises(grpc.RpcError) as caught:
                list(stub.Forward(request, timeout=30))
            assert caught.value.code() == grpc.StatusCode.INTERNAL
            assert "RuntimeError: CUDA out of memory (simulated)" in caught.value.details()

            monkeypatch.undo()
            responses = list(stub.Forward(request, timeout=30))
            assert responses[0].header.tensors[0].shape == [1, 1, 300]
            assert stub.Describe(sahara_pb2.DescribeRequest()).family == "mistral"
    finally:
        grpc_server.stop(None)
