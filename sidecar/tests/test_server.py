"""The sidecar over real gRPC: a `python -m sahara_sidecar serve` process on a tiny GQA model."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch

from sahara_sidecar import loading
from sahara_sidecar.ablation import AblationSpec
from sahara_sidecar.forward import forward_rows
from sahara_sidecar.prompts import encode
from sahara_sidecar.protos import health_pb2, health_pb2_grpc, sahara_pb2, sahara_pb2_grpc

SIDECAR = Path(__file__).resolve().parents[1]
PROMPTS = ["Hi", "How do I bake bread at home?", "Tell me how to build a birdhouse from scrap wood, step by step."]
UA, SC, MEAN = sahara_pb2.ABLATION_METHOD_UA, sahara_pb2.ABLATION_METHOD_SC, sahara_pb2.ABLATION_METHOD_MEAN


def start_server(model_dir: Path, tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, dict]:
    log = open(tmp_path / "sidecar.log", "w")  # noqa: SIM115 - the process owns it
    proc = subprocess.Popen(
        [sys.executable, "-m", "sahara_sidecar", "serve", "--model", str(model_dir), "--threads", "1", *extra],
        cwd=SIDECAR,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout=90)
    if not line or not line[0]:
        proc.kill()
        raise RuntimeError(f"sidecar did not report listening:\n{(tmp_path / 'sidecar.log').read_text()}")
    return proc, json.loads(line[0])


@pytest.fixture(scope="module")
def server(tiny_dirs, tmp_path_factory):
    proc, ready = start_server(tiny_dirs["qwen2"], tmp_path_factory.mktemp("server"), "--max-batch-rows", "4")
    channel = grpc.insecure_channel(
        f"127.0.0.1:{ready['port']}", options=[("grpc.max_receive_message_length", 64 << 20)]
    )
    yield {"proc": proc, "ready": ready, "channel": channel, "dir": tiny_dirs["qwen2"]}
    channel.close()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, "the sidecar exits cleanly on SIGTERM"
    assert proc.stdout.read() == "", "stdout carries the listening line only"


@pytest.fixture(scope="module")
def stub(server):
    return sahara_pb2_grpc.AblationServiceStub(server["channel"])


@pytest.fixture(scope="module")
def local(server):
    return loading.load(str(server["dir"]), device="cpu", dtype="float32")


def spec(heads=(), method=UA, eps=1e-5) -> sahara_pb2.AblationSpec:
    pb_heads = [sahara_pb2.Head(layer=layer, head=head) for layer, head in heads]
    return sahara_pb2.AblationSpec(heads=pb_heads, method=method, eps=eps)


def read_stream(responses) -> tuple[sahara_pb2.ForwardHeader, dict[str, np.ndarray], int, sahara_pb2.ForwardStats]:
    """Reassemble a Forward/Attribute stream: header first, chunks placed by offset, stats last."""
    responses = list(responses)
    assert responses[0].WhichOneof("part") == "header"
    assert responses[-1].WhichOneof("part") == "stats", "the stats trailer is the last message"
    header = responses[0].header
    buffers = {t.name: bytearray(t.byte_length) for t in header.tensors}
    filled = dict.fromkeys(buffers, 0)
    for response in responses[1:-1]:
        assert response.WhichOneof("part") == "chunk"
        chunk = response.chunk
        assert len(chunk.data) <= (1 << 20)
        buffers[chunk.name][chunk.offset : chunk.offset + len(chunk.data)] = chunk.data
        filled[chunk.name] += len(chunk.data)
    assert filled == {name: len(buffer) for name, buffer in buffers.items()}
    tensors = {
        t.name: np.frombuffer(bytes(buffers[t.name]), dtype="<f4").reshape(tuple(t.shape)) for t in header.tensors
    }
    return header, tensors, len(responses) - 2, responses[-1].stats


def forward(stub, **request) -> tuple[sahara_pb2.ForwardHeader, dict[str, np.ndarray], int]:
    """Call Forward and reassemble the tensors from their chunks by offset."""
    header, tensors, chunks, _stats = read_stream(stub.Forward(sahara_pb2.ForwardRequest(**request), timeout=60))
    return header, tensors, chunks


def expect_invalid(call, *fragments: str) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        result = call()
        if not isinstance(
            result, sahara_pb2.DescribeResponse | sahara_pb2.MeasurePeakResponse | sahara_pb2.CountTokensResponse
        ):
            list(result)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    for fragment in fragments:
        assert fragment in caught.value.details()
    return caught.value.details()


def test_listening_line(server):
    ready = server["ready"]
    assert ready["event"] == "listening" and ready["port"] > 0 and ready["pid"] == server["proc"].pid
    assert ready["host"] == "127.0.0.1" and ready["model"] == str(Path(server["dir"]).resolve())


def test_health_serving(server):
    health = health_pb2_grpc.HealthStub(server["channel"])
    for service in ("", "sahara.v1.AblationService"):
        assert (
            health.Check(health_pb2.HealthCheckRequest(service=service)).status
            == health_pb2.HealthCheckResponse.SERVING
        )
        watched = list(health.Watch(health_pb2.HealthCheckRequest(service=service), timeout=10))
        assert watched[0].status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as caught:
        health.Check(health_pb2.HealthCheckRequest(service="nope"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_command(server):
    port = str(server["ready"]["port"])
    done = subprocess.run(
        [sys.executable, "-m", "sahara_sidecar", "health", "--port", port], cwd=SIDECAR, capture_output=True, text=True
    )
    assert (done.returncode, done.stdout.strip()) == (0, "SERVING"), done.stderr


def test_describe_gqa_model(stub, local):
    facts = stub.Describe(sahara_pb2.DescribeRequest())
    assert (facts.family, facts.num_layers, facts.num_heads, facts.num_kv_heads) == ("qwen2", 3, 4, 2)
    assert (facts.head_dim, facts.hidden_size, facts.vocab_size, facts.max_positions) == (16, 64, 300, 256)
    assert facts.dtype == sahara_pb2.DTYPE_FLOAT32 and facts.device == "cpu"
    assert facts.q_proj_bias and not facts.o_proj_bias and not facts.queries_normalised
    assert not facts.has_chat_template and (facts.bos_token, facts.eos_token) == ("<s>", "</s>")
    assert facts.sidecar_version and facts.torch_version == torch.__version__ and facts.transformers_version
    by_name = {p.name: p for p in facts.parameters}
    q = by_name["model.layers.0.self_attn.q_proj.weight"]
    assert (list(q.shape), q.count) == ([64, 64], 4096)
    assert list(by_name["model.layers.0.self_attn.k_proj.weight"].shape) == [32, 64]  # 2 kv heads x 16
    assert "lm_head.weight" in by_name, "tied tensors are listed under every name"
    unique = sum(p.numel() for p in local.model.parameters())
    assert facts.total_parameters == unique == sum(p.count for p in facts.parameters) - 300 * 64
    assert facts.model_fingerprint == local.fingerprint and len(facts.model_fingerprint) == 64


def test_forward_equals_in_process(stub, local):
    specs = [spec(), spec([(0, 1), (2, 3)], UA, 1e-5), spec([(1, 0)], SC, 0.0), spec([(2, 2)], MEAN)]
    header, tensors, _ = forward(
        stub, prompts=PROMPTS, specs=specs, return_logprobs=True, return_hidden=True, max_batch_rows=5
    )
    assert list(header.prompt_tokens) == [len(ids) for ids in encode(PROMPTS, "paper", local.tokenizer)]
    assert [(t.name, list(t.shape), t.dtype) for t in header.tensors] == [
        ("logprobs", [3, 4, 300], sahara_pb2.DTYPE_FLOAT32),
        ("hidden", [3, 4, 64], sahara_pb2.DTYPE_FLOAT32),
    ]
    ids = encode(PROMPTS, "paper", local.tokenizer)
    local_specs = [
        AblationSpec(),
        AblationSpec(((0, 1), (2, 3)), "ua", 1e-5),
        AblationSpec(((1, 0),), "sc", 0.0),
        AblationSpec(((2, 2),), "mean", 0.0),
    ]
    for n, prompt_ids in enumerate(ids):  # each prompt alone, unpadded: the padded server batch must agree
        for m, local_spec in enumerate(local_specs):
            (alone,) = forward_rows(
                local, [prompt_ids], [local_spec], want_logprobs=True, want_hidden=True, max_batch_rows=1
            )
            np.testing.assert_allclose(tensors["logprobs"][n, m], alone.logprobs[0].numpy(), atol=1e-5, rtol=0)
            np.testing.assert_allclose(tensors["hidden"][n, m], alone.hidden[0].numpy(), atol=1e-5, rtol=0)
    assert not np.allclose(tensors["logprobs"][:, 0], tensors["logprobs"][:, 1])
    assert np.allclose(np.exp(tensors["logprobs"]).sum(-1), 1.0, atol=1e-4)


def test_forward_templates_and_single_output(stub):
    header, tensors, _ = forward(
        stub, prompts=PROMPTS[:1], template=sahara_pb2.PROMPT_TEMPLATE_DIRECT, specs=[spec()], return_hidden=True
    )
    assert list(tensors) == ["hidden"] and tensors["hidden"].shape == (1, 1, 64)
    _, paper, _ = forward(stub, prompts=PROMPTS[:1], specs=[spec()], return_hidden=True)
    assert header.prompt_tokens[0] < 10 and not np.allclose(tensors["hidden"], paper["hidden"])


def test_count_tokens_equals_forward_header(stub, local):
    for template in (sahara_pb2.PROMPT_TEMPLATE_PAPER, sahara_pb2.PROMPT_TEMPLATE_DIRECT):
        counted = stub.CountTokens(sahara_pb2.CountTokensRequest(prompts=PROMPTS, template=template), timeout=30)
        header, _, _ = forward(stub, prompts=PROMPTS, template=template, specs=[spec()], return_logprobs=True)
        assert list(counted.prompt_tokens) == list(header.prompt_tokens)
        name = "paper" if template == sahara_pb2.PROMPT_TEMPLATE_PAPER else "direct"
        assert list(counted.prompt_tokens) == [len(ids) for ids in encode(PROMPTS, name, local.tokenizer)]
    request = sahara_pb2.CountTokensRequest
    expect_invalid(lambda: stub.CountTokens(request(prompts=["fine", ""]), timeout=30), "prompts[1]", "empty")
    expect_invalid(lambda: stub.CountTokens(request(prompts=[]), timeout=30), "no prompts")
    expect_invalid(
        lambda: stub.CountTokens(request(prompts=["x"], template=sahara_pb2.PROMPT_TEMPLATE_CHAT), timeout=30),
        "chat template",
    )


def test_large_tensor_streams_in_chunks(stub):
    specs = [spec([(layer, head)], SC, 0.0) for layer in range(3) for head in range(4)] * 25  # 300 specs
    header, tensors, chunks = forward(stub, prompts=PROMPTS, specs=specs, return_logprobs=True, max_batch_rows=64)
    assert header.tensors[0].byte_length == 3 * 300 * 300 * 4 > (1 << 20)
    assert chunks == 2
    np.testing.assert_array_equal(tensors["logprobs"][:, :12], tensors["logprobs"][:, 12:24])


def test_concurrent_forwards_share_no_output_memory(stub):
    """Requests in flight together, each block's host buffer given back for the next (host_buffers.py):
    every result is what the same request gave alone."""
    requests = [
        dict(
            prompts=PROMPTS[i:] + PROMPTS[:i], specs=[spec(), spec([(0, i), (1, 3 - i)], SC, 0.0)], return_logprobs=True
        )
        for i in range(3)
    ]
    alone = [forward(stub, **request)[1]["logprobs"] for request in requests]
    failures: list[str] = []

    def repeat(i: int) -> None:
        for _ in range(6):
            got = forward(stub, **requests[i])[1]["logprobs"]
            if not np.array_equal(got, alone[i]):
                failures.append(f"request {i}: differs by {np.abs(got - alone[i]).max()}")

    threads = [threading.Thread(target=repeat, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert not np.array_equal(alone[0], alone[1])


def kl(p_log: np.ndarray, q_log: np.ndarray) -> float:
    p_log, q_log = p_log.astype(np.float64), q_log.astype(np.float64)
    return float((np.exp(p_log) * (p_log - q_log)).sum())


@pytest.mark.parametrize("engine", [sahara_pb2.ENGINE_FAST, sahara_pb2.ENGINE_NAIVE])
def test_forward_logprob_support(stub, engine):
    """K tokens most likely in each prompt's first row, then the rest of the mass: exactly the full
    log-probs there, and a KL over them that is a lower bound of the full KL."""
    specs = [spec(), spec([(0, 1)], SC, 0.0), spec([(1, 2), (2, 0)]), spec([(2, 3)], MEAN)]
    request = dict(prompts=PROMPTS, specs=specs, return_logprobs=True, engine=engine, max_batch_rows=5)
    _, full, _ = forward(stub, **request)
    header, reduced, _ = forward(stub, **request, logprob_support=7)
    assert list(header.tensors[0].shape) == [3, 4, 8] and header.tensors[0].byte_length == 3 * 4 * 8 * 4
    got = reduced["logprobs"]
    for n in range(3):
        ids = np.argsort(-full["logprobs"][n, 0], kind="stable")[:7]
        np.testing.assert_array_equal(got[n, 0, :7], full["logprobs"][n, 0, ids])
        for m in range(4):
            outside = np.delete(full["logprobs"][n, m], ids).astype(np.float64)
            rest = outside.max() + np.log(np.exp(outside - outside.max()).sum())
            np.testing.assert_allclose(got[n, m, :7], full["logprobs"][n, m, ids], rtol=0, atol=1e-6)
            np.testing.assert_allclose(got[n, m, 7], rest, rtol=0, atol=1e-5)
            coarse, exact = kl(got[n, 0], got[n, m]), kl(full["logprobs"][n, 0], full["logprobs"][n, m])
            assert coarse <= exact + 1e-6
        assert kl(got[n, 0], got[n, 1]) > 0  # the ablation still shows (a random model's support holds little mass)
    assert np.allclose(np.exp(got.astype(np.float64)).sum(-1), 1.0, atol=1e-5)


def test_forward_logprob_support_invalid(stub):
    expect_invalid(
        lambda: forward(stub, prompts=PROMPTS[:1], specs=[spec()], return_logprobs=True, logprob_support=300),
        "logprob_support",
        "vocabulary size 300",
    )
    expect_invalid(
        lambda: forward(stub, prompts=PROMPTS[:1], specs=[spec()], return_hidden=True, logprob_support=5),
        "logprob_support",
        "without return_logprobs",
    )


def test_invalid_requests_then_still_serving(stub):
    ok = dict(prompts=PROMPTS, specs=[spec()], return_logprobs=True)

    def call(**changes):
        return lambda: stub.Forward(sahara_pb2.ForwardRequest(**{**ok, **changes}), timeout=30)

    expect_invalid(
        call(specs=[spec(), spec(), spec(), spec([(9, 2)])]),
        "specs[3].heads[0] L9H2",
        "layer 9 out of range",
        "3 layers (0..2)",
    )
    expect_invalid(call(specs=[spec([(0, 0), (1, 7)])]), "specs[0].heads[1] L1H7", "head 7 out of range")
    expect_invalid(call(prompts=[]), "prompts", "no prompts")
    expect_invalid(call(prompts=["fine", ""]), "prompts[1]", "empty")
    expect_invalid(call(specs=[]), "specs", "no ablation specs")
    expect_invalid(
        call(specs=[spec([(0, 0)], sahara_pb2.ABLATION_METHOD_UNSPECIFIED)]), "specs[0].method", "UNSPECIFIED"
    )
    expect_invalid(call(specs=[spec([(0, 0)], 42)]), "specs[0].method")
    expect_invalid(call(specs=[spec(), spec([(0, 0)], UA, math.nan)]), "specs[1].eps", "finite")
    expect_invalid(call(specs=[spec([(0, 0)], SC, math.inf)]), "specs[0].eps", "finite")
    expect_invalid(call(return_logprobs=False), "return_logprobs", "return_hidden")
    expect_invalid(call(template=sahara_pb2.PROMPT_TEMPLATE_CHAT), "chat template")
    expect_invalid(
        lambda: stub.Generate(sahara_pb2.GenerateRequest(prompts=["x"], spec=spec([(5, 0)], UA)), timeout=30),
        "spec.heads[0] L5H0",
    )
    _, tensors, _ = forward(stub, **ok)
    assert tensors["logprobs"].shape == (3, 1, 300)


def test_forward_engines_agree_and_report_stats(stub):
    specs = [spec()] + [spec([(layer, head)], UA, 1e-5) for layer in range(3) for head in range(4)]
    request = dict(prompts=PROMPTS, specs=specs, return_logprobs=True, return_hidden=True)
    results = {}
    for engine in (sahara_pb2.ENGINE_UNSPECIFIED, sahara_pb2.ENGINE_FAST, sahara_pb2.ENGINE_NAIVE):
        call = stub.Forward(sahara_pb2.ForwardRequest(**request, engine=engine), timeout=60)
        _, tensors, _, stats = read_stream(call)
        results[engine] = (tensors, stats)
        assert stats.rows == 3 * 13 and stats.forwards > 0 and stats.layer_tokens > 0 and stats.flops > 0
        assert stats.compute_seconds > 0 and stats.oom_splits == 0
        assert 1 <= stats.max_batch_rows <= 4, "the server's --max-batch-rows 4 caps every batch"
    fast, naive = results[sahara_pb2.ENGINE_FAST], results[sahara_pb2.ENGINE_NAIVE]
    for name in ("logprobs", "hidden"):
        np.testing.assert_allclose(fast[0][name], naive[0][name], atol=2e-5, rtol=0)
        np.testing.assert_array_equal(fast[0][name], results[sahara_pb2.ENGINE_UNSPECIFIED][0][name])
    assert naive[1].forwards == 39 and naive[1].max_batch_rows == 1
    assert fast[1].layer_tokens < naive[1].layer_tokens and fast[1].forwards < naive[1].forwards

    call = stub.Forward(sahara_pb2.ForwardRequest(**request, max_batch_rows=2, memory_budget_gib=0.25), timeout=60)
    _, tensors, _, stats = read_stream(call)
    assert stats.max_batch_rows <= 2
    np.testing.assert_allclose(tensors["logprobs"], fast[0]["logprobs"], atol=2e-5, rtol=0)


def test_forward_invalid_engine_and_budget(stub):
    ok = dict(prompts=PROMPTS, specs=[spec()], return_logprobs=True)

    def call(**changes):
        return lambda: stub.Forward(sahara_pb2.ForwardRequest(**{**ok, **changes}), timeout=30)

    expect_invalid(call(engine=7), "engine", "7")
    for budget in (-1.0, math.nan, math.inf, 1e300):  # 1e300 GiB: no finite byte count
        expect_invalid(call(memory_budget_gib=budget), "memory_budget_gib")
    _, tensors, _ = forward(stub, **ok)
    assert tensors["logprobs"].shape == (3, 1, 300)


def test_attribute(stub):
    request = sahara_pb2.AttributeRequest(prompts=PROMPTS, method=SC, eps=0.0, max_batch_rows=2)
    header, tensors, _, stats = read_stream(stub.Attribute(request, timeout=60))
    assert [(t.name, list(t.shape), t.dtype) for t in header.tensors] == [
        ("attribution", [3, 3, 4], sahara_pb2.DTYPE_FLOAT32)
    ]
    assert len(header.prompt_tokens) == 3
    attribution = tensors["attribution"]
    assert np.isfinite(attribution).all() and (attribution >= 0).all() and attribution.max() > 0
    assert (stats.rows, stats.forwards, stats.max_batch_rows) == (3, 2, 2) and stats.flops > 0

    def call(**changes):
        fields = dict(prompts=PROMPTS, method=UA, eps=1e-5) | changes
        return lambda: stub.Attribute(sahara_pb2.AttributeRequest(**fields), timeout=30)

    expect_invalid(call(method=MEAN), "method", "MEAN", "UA or SC")
    expect_invalid(call(method=sahara_pb2.ABLATION_METHOD_UNSPECIFIED), "method", "UNSPECIFIED")
    expect_invalid(call(eps=math.nan), "eps", "finite")
    expect_invalid(call(prompts=[]), "prompts")


def test_measure_peak(stub):
    peak = stub.MeasurePeak(sahara_pb2.MeasurePeakRequest(size=128, min_seconds=0.05), timeout=60)
    assert peak.flops_per_second > 0 and peak.repeats >= 1
    assert (peak.size, peak.device, peak.dtype) == (128, "cpu", sahara_pb2.DTYPE_FLOAT32)
    auto = stub.MeasurePeak(sahara_pb2.MeasurePeakRequest(min_seconds=0.05), timeout=60)
    assert auto.size == 1024
    for bad in (dict(min_seconds=-1.0), dict(min_seconds=math.nan), dict(size=100000)):
        expect_invalid(lambda bad=bad: stub.MeasurePeak(sahara_pb2.MeasurePeakRequest(**bad), timeout=30))


def test_generate_greedy_deterministic_and_ablation_changes_it(stub):
    def replies(ablation, **extra):
        request = sahara_pb2.GenerateRequest(prompts=PROMPTS, spec=ablation, max_new_tokens=12, **extra)
        return [(r.index, r.text, r.new_tokens, r.stopped_at_eos) for r in stub.Generate(request, timeout=60)]

    clean = replies(spec())
    assert [r[0] for r in clean] == [0, 1, 2]
    assert all(0 < r[2] <= 12 and (r[2] == 12 or r[3]) for r in clean)
    assert replies(spec(), max_batch_rows=1) == clean
    every_head = [(layer, head) for layer in range(3) for head in range(4)]
    ablated = replies(spec(every_head, SC, 0.0))
    assert ablated != clean
    sampled = sahara_pb2.Sampling(top_k=5, temperature=1.0, seed=3)
    assert replies(spec(), sampling=sampled) == replies(spec(), sampling=sampled)


def run_serve(model_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sahara_sidecar", "serve", "--model", str(model_dir), "--threads", "1"],
        cwd=SIDECAR,
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def test_missing_model_exits_2(tmp_path):
    done = run_serve(tmp_path / "no-such-model")
    assert done.returncode == 2 and done.stdout == ""
    assert "model directory" in done.stderr and "does not exist" in done.stderr


def test_unsupported_family_exits_2(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=300, n_positions=64)).save_pretrained(
        tmp_path
    )
    done = run_serve(tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert "'gpt2' is not supported" in done.stderr and "q_proj (or a fused qkv_proj) and o_proj" in done.stderr


def test_exits_when_its_parent_is_killed(tiny_dirs, tmp_path):
    """--exit-with-parent (the CLI's own sidecars): SIGKILL of the parent leaves no sidecar running."""
    serve = [sys.executable, "-m", "sahara_sidecar", "serve", "--model", str(tiny_dirs["llama"]), "--exit-with-parent"]
    launcher = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess; subprocess.run({serve!r})"],
        cwd=SIDECAR,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    sidecar_pid = json.loads(launcher.stdout.readline())["pid"]
    launcher.kill()
    launcher.wait(timeout=10)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and running(sidecar_pid):
        time.sleep(0.2)
    assert not running(sidecar_pid), "the orphaned sidecar stopped"


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's exit may wait for init to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
