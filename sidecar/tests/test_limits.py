"""Per-request limits answered with a status and a message saying what to change, and Generate
surviving out-of-memory (split and retried, or RESOURCE_EXHAUSTED for one prompt)."""

from __future__ import annotations

import grpc
import pytest
import tiny_models
import torch

from sahara_sidecar import loading
from sahara_sidecar.protos import sahara_pb2, sahara_pb2_grpc
from sahara_sidecar.security import MIB
from sahara_sidecar.server import Limits, build_server

LIMITS = Limits(max_request_bytes=8192, max_prompts=3, max_specs=5, max_new_tokens=16)
CLEAN = sahara_pb2.AblationSpec()


@pytest.fixture(scope="module")
def lm(tmp_path_factory) -> loading.LoadedModel:
    path = tiny_models.save("llama", tmp_path_factory.mktemp("llama"))
    return loading.load(str(path), device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def stub(lm):
    server, port, _ = build_server(lm, "127.0.0.1", 0, limits=LIMITS)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield sahara_pb2_grpc.AblationServiceStub(channel)
    channel.close()
    server.stop(None)


def failure(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code(), caught.value.details() or ""


def forward(stub, prompts, specs=(CLEAN,)):
    return list(stub.Forward(sahara_pb2.ForwardRequest(prompts=prompts, specs=specs, return_logprobs=True), timeout=30))


def test_request_size(stub):
    code, details = failure(lambda: forward(stub, ["x" * 9000]))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "over this sidecar's limit of 8,192" in details and "--max-request-mib" in details
    code, details = failure(lambda: forward(stub, ["x" * (3 * 8192 + MIB)]))  # past gRPC's own ceiling
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert forward(stub, ["Hi"])[-1].HasField("stats")


def test_prompts_and_specs_per_request(stub):
    code, details = failure(lambda: forward(stub, ["a", "b", "c", "d"]))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details.startswith("prompts: 4 in one request, over this sidecar's limit of 3 (--max-prompts)")
    code, details = failure(lambda: forward(stub, ["a"], [CLEAN] * 6))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "specs: 6 in one request" in details and "--max-specs" in details
    generate = sahara_pb2.GenerateRequest(prompts=["a"] * 4, max_new_tokens=2)
    code, details = failure(lambda: list(stub.Generate(generate, timeout=30)))
    assert (code, "--max-prompts" in details) == (grpc.StatusCode.RESOURCE_EXHAUSTED, True)
    attribute = sahara_pb2.AttributeRequest(prompts=["a"] * 4, method=sahara_pb2.ABLATION_METHOD_UA)
    code, _ = failure(lambda: list(stub.Attribute(attribute, timeout=30)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert len(forward(stub, ["a", "b", "c"], [CLEAN] * 5)) > 2


def test_max_new_tokens(stub):
    request = sahara_pb2.GenerateRequest(prompts=["Hi"], max_new_tokens=4_000_000_000)
    code, details = failure(lambda: list(stub.Generate(request, timeout=30)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_new_tokens: 4,000,000,000 is over this sidecar's limit of 16 (--max-new-tokens)" in details
    (reply,) = stub.Generate(sahara_pb2.GenerateRequest(prompts=["Hi"], max_new_tokens=16), timeout=30)
    assert reply.new_tokens <= 16


def test_prompt_longer_than_the_context(stub, lm):
    limit = loading.max_positions(lm.model)
    long_prompt = " ".join(["bread"] * (limit + 10))  # under 8 KiB, over the positions
    code, details = failure(lambda: forward(stub, ["Hi", long_prompt]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("prompts[1] has ")
    assert f"tokens; the model takes at most {limit} positions; shorten or drop that prompt" in details


def test_generate_splits_on_out_of_memory(lm, monkeypatch):
    """A batch of more than one prompt 'runs out of memory': it is halved until it fits, same replies."""
    server, port, _ = build_server(lm, "127.0.0.1", 0)
    original = lm.model.generate
    calls: list[int] = []

    def tight(*args, **kwargs):
        rows = kwargs["input_ids"].shape[0]
        calls.append(rows)
        if rows > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(*args, **kwargs)

    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = sahara_pb2_grpc.AblationServiceStub(channel)
            request = sahara_pb2.GenerateRequest(prompts=["Hi", "How do I bake bread?", "Tell me"], max_new_tokens=3)
            expected = [(r.index, r.text) for r in stub.Generate(request, timeout=60)]
            monkeypatch.setattr(lm.model, "generate", tight)
            got = [(r.index, r.text) for r in stub.Generate(request, timeout=60)]
            assert got == expected
            assert calls[0] == 3 and calls.count(1) == 3

            def never(*_args, **_kwargs):
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

            monkeypatch.setattr(lm.model, "generate", never)
            code, details = failure(lambda: list(stub.Generate(request, timeout=60)))
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "out of memory with a single row" in details
            monkeypatch.undo()
            assert [(r.index, r.text) for r in stub.Generate(request, timeout=60)] == expected
    finally:
        server.stop(None)
