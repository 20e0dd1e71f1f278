"""A bounded, seeded fuzz of a real sidecar process on loopback: random field values (NaN and
huge eps, heads and layers out of range, empty and garbage prompts, enormous max_new_tokens,
unknown enum values) and random or mutated bytes sent raw to every method. Every call must end
with a proper status before its deadline (never DEADLINE_EXCEEDED, UNAVAILABLE, UNKNOWN or
INTERNAL), the process must stay up, and valid requests must still be served.

Deterministic (seed 20260105, 400 calls, ~10 s of calls); SAHARA_FUZZ_SEED and
SAHARA_FUZZ_ITERATIONS explore further, e.g. SAHARA_FUZZ_ITERATIONS=5000.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest
import tiny_models

from sahara_sidecar.protos import health_pb2, health_pb2_grpc, sahara_pb2, sahara_pb2_grpc

SIDECAR = Path(__file__).resolve().parents[1]
SEED = int(os.environ.get("SAHARA_FUZZ_SEED", "20260105"))  # fixed; override to explore further
ITERATIONS = int(os.environ.get("SAHARA_FUZZ_ITERATIONS", "400"))
DEADLINE_S = 20.0
SERVICE = "/sahara.v1.AblationService/"
STREAMING = {"Forward", "Generate", "Attribute"}
UNARY = {"Describe", "MeasurePeak"}
ACCEPTED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}

U32 = 2**32 - 1
I32 = 2**31 - 1


class Fields:
    """Field values: each drawn from the bad ones with probability `wildness`, else from the good ones."""

    def __init__(self, rng: random.Random, wildness: float) -> None:
        self.rng, self.wildness = rng, wildness

    def pick(self, good: list, bad: list):
        return self.rng.choice(bad if self.rng.random() < self.wildness else good)

    def eps(self) -> float:
        return self.pick([1e-5, 0.0, 0.5, 1.0, -1.0], [1e6, -1e308, 1e308, 5e-324, math.nan, math.inf, -math.inf])

    def enum(self, good: list[int]) -> int:
        return self.pick(good, [4, 99, -1, I32])

    def prompt(self) -> str:
        rng = self.rng
        return self.pick(
            ["Hi", "How do I bake bread?", "Tell me a story about a fox.", "\u00e9t\u00e9 \u4f60\u597d"],
            # the last one is past the model's 256 positions sometimes
            [
                "",
                "\x00",
                " ",
                "\u202e\u0301\u200b\ufeff",
                "🙂" * rng.randint(1, 30),
                garbage(rng),
                "bread " * rng.randint(100, 400),
            ],
        )

    def prompts(self) -> list[str]:
        return [self.prompt() for _ in range(self.pick([1, 2, 3], [0, 17]))]

    def spec(self) -> sahara_pb2.AblationSpec:
        heads = [
            sahara_pb2.Head(layer=self.pick([0, 1, 2], [3, 100, U32]), head=self.pick([0, 1, 2, 3], [4, 100, U32]))
            for _ in range(self.pick([0, 1, 1, 2, 3], [12, 40]))
        ]
        return sahara_pb2.AblationSpec(heads=heads, method=self.enum([1, 2, 3]), eps=self.eps())


def garbage(rng: random.Random) -> str:
    """Unicode: any code point but the surrogates (not representable in a proto string)."""
    points = []
    for _ in range(rng.randint(1, 40)):
        point = rng.randint(0, 0x10FFFF)
        points.append(point if not 0xD800 <= point <= 0xDFFF else 0xFFFD)
    return "".join(map(chr, points))


def structured(rng: random.Random, method: str):
    f = Fields(rng, rng.choice([0.05, 0.2, 0.6]))
    if method == "Describe":
        return sahara_pb2.DescribeRequest()
    if method == "Forward":
        return sahara_pb2.ForwardRequest(
            prompts=f.prompts(),
            template=f.enum([0, 1, 2]),
            specs=[f.spec() for _ in range(f.pick([1, 2, 5], [0, 65, 70]))],
            return_logprobs=rng.random() < 0.7,
            return_hidden=f.pick([True], [False]),
            max_batch_rows=f.pick([0, 1, 2], [U32]),
            engine=f.enum([0, 1, 2]),
            memory_budget_gib=f.pick([0.0, 0.001, 2.0], [1e-300, -1.0, math.nan, math.inf, 1e300]),
        )
    if method == "Generate":
        return sahara_pb2.GenerateRequest(
            prompts=f.prompts(),
            template=f.enum([0, 1, 2, 3]),
            spec=f.spec(),
            max_new_tokens=f.pick([1, 3, 8], [0, 33, U32]),
            sampling=sahara_pb2.Sampling(
                top_k=f.pick([0, 0, 1, 5], [U32]),
                temperature=f.pick([0.0, 1.0, 0.7], [1e-300, -1.0, math.nan, math.inf, 1e300]),
                seed=f.pick([0, 7], [2**64 - 1]),
            ),
            max_batch_rows=f.pick([0, 1, 2], [U32]),
        )
    if method == "Attribute":
        return sahara_pb2.AttributeRequest(
            prompts=f.prompts(),
            template=f.enum([0, 1, 2]),
            method=f.enum([1, 2]),
            eps=f.eps(),
            max_batch_rows=f.pick([0, 1, 2], [U32]),
        )
    return sahara_pb2.MeasurePeakRequest(
        size=f.pick([1, 16, 64], [16385, U32]), min_seconds=f.pick([0.01], [-1.0, math.nan, math.inf, 61.0])
    )


def raw_bytes(rng: random.Random, method: str) -> bytes:
    """Random bytes, or a valid request with a few bytes flipped, cut or appended."""
    if rng.random() < 0.5:
        return rng.randbytes(rng.choice([0, 1, 2, 7, 64, 700]))
    data = bytearray(structured(rng, method).SerializeToString())
    for _ in range(rng.randint(1, 4)):
        action = rng.random()
        if data and action < 0.5:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif data and action < 0.75:
            del data[rng.randrange(len(data)) :]
        else:
            data += rng.randbytes(rng.randint(1, 8))
    return bytes(data)


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    model = tiny_models.save("llama", root / "llama")
    log = open(root / "sidecar.log", "w")  # noqa: SIM115 - the process owns it
    limits = ["--max-new-tokens", "32", "--max-prompts", "16", "--max-specs", "64", "--max-request-mib", "0.25"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sahara_sidecar", "serve", "--model", str(model), "--threads", "1", *limits],
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
        raise RuntimeError(f"sidecar did not report listening:\n{(root / 'sidecar.log').read_text()}")
    port = json.loads(line[0])["port"]
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield {"proc": proc, "channel": channel, "log": root / "sidecar.log"}
    channel.close()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, "the sidecar exits cleanly after the fuzz"


def still_serving(channel: grpc.Channel) -> None:
    stub = sahara_pb2_grpc.AblationServiceStub(channel)
    request = sahara_pb2.ForwardRequest(
        prompts=["Hi", "How do I bake bread?"],
        specs=[sahara_pb2.AblationSpec(), sahara_pb2.AblationSpec(heads=[sahara_pb2.Head(layer=1, head=2)], method=1)],
        return_logprobs=True,
        return_hidden=True,
    )
    responses = list(stub.Forward(request, timeout=DEADLINE_S))
    assert [t.name for t in responses[0].header.tensors] == ["logprobs", "hidden"]
    assert responses[-1].stats.rows >= 4
    (reply,) = stub.Generate(sahara_pb2.GenerateRequest(prompts=["Hi"], max_new_tokens=2), timeout=DEADLINE_S)
    assert reply.index == 0
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=DEADLINE_S)
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_fuzz(sidecar):
    rng = random.Random(SEED)
    channel, proc = sidecar["channel"], sidecar["proc"]
    outcomes: Counter[tuple[str, str]] = Counter()
    started = time.monotonic()
    for i in range(ITERATIONS):
        method = rng.choice(sorted(STREAMING | UNARY))
        raw = rng.random() < 0.35
        request = raw_bytes(rng, method) if raw else structured(rng, method)
        if raw:  # identity serializers: the bytes go out as they are
            call = (channel.unary_stream if method in STREAMING else channel.unary_unary)(SERVICE + method)
        else:
            call = getattr(sahara_pb2_grpc.AblationServiceStub(channel), method)
        code = grpc.StatusCode.OK
        details = ""
        t0 = time.monotonic()
        try:
            result = call(request, timeout=DEADLINE_S)
            if method in STREAMING:
                list(result)
        except grpc.RpcError as err:
            code, details = err.code(), err.details() or ""
        outcomes[(method, code.name)] += 1
        described = f"iteration {i}: {method} {'raw ' + request.hex()[:200] if raw else request!r:.600}"
        assert code in ACCEPTED, f"{described} -> {code.name}: {details}\n{sidecar['log'].read_text()[-3000:]}"
        assert code == grpc.StatusCode.OK or details, f"{described} -> {code.name} without a message"
        assert time.monotonic() - t0 < DEADLINE_S
        assert proc.poll() is None, f"{described}: the sidecar died"
        if i % 100 == 99:
            still_serving(channel)
    still_serving(channel)
    assert proc.poll() is None
    print(f"fuzz: {ITERATIONS} calls in {time.monotonic() - started:.1f} s: {dict(sorted(outcomes.items()))}")
    assert outcomes[("Forward", "OK")] > 0 and outcomes[("Forward", "INVALID_ARGUMENT")] > 0
