"""GPU check for the sidecar engine: CUDA + bf16, run on a lent GPU host (see docs/PERFORMANCE.md).

Prints figures and writes them as JSON to $OUT/gpu_check.json (or ./gpu_check.json):
  1. environment (torch, CUDA, GPU, transformers);
  2. dense bf16 matmul peak (8192^3), the yardstick for achieved FLOP/s;
  3. the organism on cuda/bf16 against cpu/fp32: a full query-level Ships scan, KL agreement
     and top-5 agreement;
  4. a randomly initialised Llama-2-7b-shaped model (bf16, built from a config, no weights):
     Ships-scan throughput (heads x prompts per second) and achieved TFLOP/s by batch size,
     the fast engine's full Ships scan (every head; TFLOP/s from its own FLOP count, and the
     fraction of the matmul peak: the issue's target is >= 40%) against the naive engine's rate,
     plus ablated greedy generation;
  5. the real sidecar process on cuda/bf16 over gRPC: Describe, Forward and Generate.

Usage (from the repo root):  python bench/gpu_check.py --data DIR_WITH_jailbreakbench.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sidecar"))

from sahara_sidecar import ablation, forward, loading  # noqa: E402
from sahara_sidecar.ablation import AblationSpec  # noqa: E402
from sahara_sidecar.load_checks import check_engines_agree, check_query_ablation  # noqa: E402
from sahara_sidecar.engines import run_forward  # noqa: E402
from sahara_sidecar.generate import GREEDY, generate  # noqa: E402
from sahara_sidecar.prompts import encode  # noqa: E402
from sahara_sidecar.stats import ForwardStats  # noqa: E402

RESULTS: dict[str, object] = {}
# --smoke runs every section on the CPU with small shapes, to check the script before GPU time is spent.
SMOKE = "--smoke" in sys.argv
DEVICE, DTYPE = ("cpu", "float32") if SMOKE else ("cuda", "bfloat16")


def report(section: str, **figures: object) -> None:
    RESULTS.setdefault(section, {}).update(figures)  # type: ignore[union-attr]
    print(f"[{section}] " + ", ".join(f"{k}={v}" for k, v in figures.items()), flush=True)


def synchronize() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def sync_time(fn, repeats: int = 1) -> float:
    synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize()
    return (time.perf_counter() - start) / repeats


def matmul_peak() -> float:
    n = 1024 if SMOKE else 8192
    dtype = loading.DTYPES[DTYPE]
    a = torch.randn(n, n, device=DEVICE, dtype=dtype)
    b = torch.randn(n, n, device=DEVICE, dtype=dtype)
    for _ in range(3):
        a @ b
    seconds = sync_time(lambda: a @ b, repeats=10)
    tflops = 2 * n**3 / seconds / 1e12
    report("matmul", n=n, bf16_tflops=round(tflops, 1))
    return tflops


def single_head_specs(geo: ablation.AttentionGeometry, limit: int | None = None) -> list[AblationSpec]:
    heads = [(layer, head) for layer in range(geo.num_layers) for head in range(geo.num_heads)]
    return [AblationSpec(heads=(h,), method="ua", eps=1e-5) for h in heads[:limit]]


def scan_logprobs(
    lm: loading.LoadedModel,
    ids: list[list[int]],
    specs: list[AblationSpec],
    rows: int = 0,
    engine: str = "full",
    stats: ForwardStats | None = None,
) -> torch.Tensor:
    """The sidecar's work for a Ships scan: clean + one row per head, last-position log-probs on the CPU.

    engine "full": every row a full forward, `rows` per batch; "fast"/"naive": the sidecar's engines."""
    all_specs = [AblationSpec(), *specs]
    out = torch.empty(len(ids) * len(all_specs), lm.vocab_size)
    if engine == "full":
        batches = forward.forward_rows(lm, ids, all_specs, want_logprobs=True, want_hidden=False, max_batch_rows=rows)
    else:
        batches = run_forward(lm, ids, all_specs, engine=engine, want_logprobs=True, want_hidden=False, stats=stats)
    for batch in batches:
        out[batch.rows.start : batch.rows.stop] = batch.logprobs
    return out.view(len(ids), len(all_specs), -1)


def ships_kl(
    lm: loading.LoadedModel, ids: list[list[int]], specs: list[AblationSpec], rows: int = 0, engine: str = "full"
) -> torch.Tensor:
    """KL(clean || ablated) per (prompt, head) in float64, [N, len(specs)]."""
    lp = scan_logprobs(lm, ids, specs, rows, engine).double()
    p = lp[:, :1].exp() + 1e-12
    q = lp[:, 1:].exp() + 1e-12
    return (p * (p.log() - q.log())).sum(-1)


def organism_check(prompts: list[str]) -> None:
    model_dir = str(ROOT / "models" / "organism")
    ref = loading.load(model_dir, device="cpu", dtype="float32")
    gpu = loading.load(model_dir, device=DEVICE, dtype=DTYPE)
    ids = encode(prompts, "paper", ref.tokenizer)
    specs = single_head_specs(ref.geometry)
    kl_cpu = ships_kl(ref, ids, specs, rows=256).mean(0)
    scan_logprobs(gpu, ids, specs, rows=512)  # warm-up
    seconds = sync_time(lambda: scan_logprobs(gpu, ids, specs, rows=512))
    kl_gpu = ships_kl(gpu, ids, specs, rows=512).mean(0)
    scan_logprobs(gpu, ids[:2], specs, engine="fast")  # warm-up
    fast_seconds = sync_time(lambda: scan_logprobs(gpu, ids, specs, engine="fast"))
    kl_fast = ships_kl(gpu, ids, specs, engine="fast").mean(0)

    def top5(kl: torch.Tensor) -> list[str]:
        return [f"L{specs[i].heads[0][0]}H{specs[i].heads[0][1]}" for i in kl.argsort(descending=True)[:5]]

    def rel_diff(kl: torch.Tensor) -> float:
        return round(((kl - kl_cpu).abs() / kl_cpu.clamp_min(1e-9)).max().item(), 4)

    report(
        "organism",
        prompts=len(prompts),
        heads=len(specs),
        scan_seconds_gpu_bf16=round(seconds, 3),
        head_prompts_per_s=round(len(specs) * len(prompts) / seconds),
        fast_scan_seconds_gpu_bf16=round(fast_seconds, 3),
        fast_head_prompts_per_s=round(len(specs) * len(prompts) / fast_seconds),
        top5_cpu_fp32=top5(kl_cpu),
        top5_gpu_bf16=top5(kl_gpu),
        top5_gpu_bf16_fast=top5(kl_fast),
        top1_kl_cpu=round(kl_cpu.max().item(), 5),
        top1_kl_gpu=round(kl_gpu.max().item(), 5),
        max_rel_diff_mean_kl=rel_diff(kl_gpu),
        max_rel_diff_mean_kl_fast=rel_diff(kl_fast),
    )


def random_7b(tokenizer: object) -> loading.LoadedModel:
    from transformers import LlamaConfig, LlamaForCausalLM

    hidden, layers, heads = (256, 2, 4) if SMOKE else (4096, 32, 32)
    config = LlamaConfig(
        vocab_size=32000,
        hidden_size=hidden,
        intermediate_size=hidden * 11008 // 4096,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        bos_token_id=1,
        eos_token_id=2,
    )
    start = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(DEVICE):
        model = LlamaForCausalLM(config).to(loading.DTYPES[DTYPE]).eval()
    report("llama7b", build_seconds=round(time.perf_counter() - start, 1))
    lm = loading.wrap("random-llama-2-7b-shaped", model, tokenizer)
    try:  # the checks every load runs (load_checks.py), here in bf16 on 32 layers
        start = time.perf_counter()
        query = check_query_ablation(lm)
        distance, hidden = check_engines_agree(lm)
        report(
            "llama7b_load_checks",
            query_deviation=query,
            max_total_variation=f"{distance:.2e}",
            max_hidden_rel_diff=f"{hidden:.2e}",
            seconds=round(time.perf_counter() - start, 2),
        )
    except loading.LoadError as err:
        report("llama7b_load_checks", refused=str(err))
    start = time.perf_counter()
    fingerprint = lm.fingerprint  # the first Describe's pass over the weights
    report("llama7b", fingerprint_seconds=round(time.perf_counter() - start, 2), fingerprint=fingerprint[:12])
    return lm


def llama7b_check(prompts: list[str], tokenizer: object, peak: float) -> None:
    lm = random_7b(tokenizer)
    params = sum(p.numel() for p in lm.model.parameters())
    embedding = lm.model.get_input_embeddings().weight.numel()
    body = params - 2 * embedding  # untied lm_head; only the last position's logits are computed
    ids = encode(prompts, "paper", tokenizer)
    specs = single_head_specs(lm.geometry, limit=63)
    padded = max(len(x) for x in ids)
    report(
        "llama7b",
        parameters=params,
        prompts=len(ids),
        mean_tokens=round(sum(map(len, ids)) / len(ids), 1),
    )
    for rows in (64, 128, 256, 512, 1024):
        scan_logprobs(lm, ids[:8], specs[:7], rows=rows)  # warm-up at this batch size
        seconds = sync_time(lambda rows=rows: scan_logprobs(lm, ids, specs, rows=rows))
        n_rows = len(ids) * (len(specs) + 1)
        # forward FLOPs: 2 * body params per token (+ lm_head at the last position), padded tokens included
        flops = n_rows * (2 * body * padded + 2 * embedding)
        report(
            f"llama7b_rows{rows}",
            seconds=round(seconds, 3),
            head_prompts_per_s=round(len(specs) * len(ids) / seconds, 1),
            tflops=round(flops / seconds / 1e12, 1),
            fraction_of_peak=round(flops / seconds / 1e12 / peak, 3),
            full_scan_1024_heads_100_prompts_s=round(1024 * 100 / (len(specs) * len(ids) / seconds), 1),
        )
    fast_vs_naive(lm, ids, peak)
    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
    geo = lm.geometry
    spec = AblationSpec(heads=((min(2, geo.num_layers - 1), min(26, geo.num_heads - 1)),), method="ua", eps=1e-5)
    seconds = sync_time(
        lambda: list(
            generate(
                lm,
                ids[:32],
                spec,
                max_new_tokens=64,
                sampling=GREEDY,
                max_batch_rows=32,
            )
        )
    )
    report(
        "llama7b_generate",
        prompts=32,
        new_tokens=64,
        seconds=round(seconds, 2),
        tokens_per_s=round(32 * 64 / seconds),
        peak_mem_gib=round(torch.cuda.max_memory_allocated() / 2**30, 1) if DEVICE == "cuda" else None,
    )


def fast_vs_naive(lm: loading.LoadedModel, ids: list[list[int]], peak: float) -> None:
    """The issue's GPU figures: the fast engine's full Ships scan (every head of every layer) of 8
    prompts, its TFLOP/s by its own FLOP count (work it skips is not counted) and the fraction of
    the matmul peak; and the naive engine (one forward per row) on 1 prompt x 32 heads for its rate
    (its clean row and the heads' rows, one forward each)."""
    specs = single_head_specs(lm.geometry)
    scan_logprobs(lm, ids[:1], specs[:64], engine="fast")  # warm-up
    stats = ForwardStats()
    seconds = sync_time(lambda: scan_logprobs(lm, ids[:8], specs, engine="fast", stats=stats))
    fast_rate = len(specs) * 8 / seconds
    report(
        "llama7b_fast",
        prompts=8,
        heads=len(specs),
        seconds=round(seconds, 2),
        compute_seconds=round(stats.compute_seconds, 2),
        head_prompts_per_s=round(fast_rate, 1),
        tflops=round(stats.flops / stats.compute_seconds / 1e12, 1),
        fraction_of_peak=round(stats.flops / stats.compute_seconds / 1e12 / peak, 3),
        max_batch_rows=stats.max_batch_rows,
    )
    heads = min(32, len(specs))
    scan_logprobs(lm, ids[:1], specs[:2], engine="naive")  # warm-up
    seconds = sync_time(lambda: scan_logprobs(lm, ids[:1], specs[:heads], engine="naive"))
    naive_rate = (heads + 1) / seconds  # one forward per row: in a full scan the clean row is 1 in 1025
    report(
        "llama7b_naive",
        prompts=1,
        heads=heads,
        head_prompts_per_s=round(naive_rate, 1),
        fast_over_naive=round(fast_rate / naive_rate, 1),
    )


def grpc_check() -> None:
    """The sidecar as shipped: a separate process on cuda/bf16, called over real gRPC."""
    import grpc
    from sahara_sidecar.protos import sahara_pb2, sahara_pb2_grpc

    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT / "sidecar") + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    cmd = [
        sys.executable,
        "-m",
        "sahara_sidecar",
        "serve",
        "--model",
        str(ROOT / "models" / "organism"),
    ]
    proc = subprocess.Popen(
        [*cmd, "--device", DEVICE, "--dtype", DTYPE],
        cwd=ROOT / "sidecar",
        env=env,
        stdout=subprocess.PIPE,
    )
    try:
        line = json.loads(proc.stdout.readline())
        channel = grpc.insecure_channel(f"127.0.0.1:{line['port']}")
        stub = sahara_pb2_grpc.AblationServiceStub(channel)
        facts = stub.Describe(sahara_pb2.DescribeRequest(), timeout=30)
        specs = [sahara_pb2.AblationSpec()] + [
            sahara_pb2.AblationSpec(
                heads=[sahara_pb2.Head(layer=layer, head=h)],
                method=sahara_pb2.ABLATION_METHOD_UA,
                eps=1e-5,
            )
            for layer in range(facts.num_layers)
            for h in range(facts.num_heads)
        ]
        request = sahara_pb2.ForwardRequest(prompts=["How do I pick a lock?"] * 4, specs=specs, return_logprobs=True)
        start = time.perf_counter()
        chunks = list(stub.Forward(request, timeout=60))
        forward_s = time.perf_counter() - start
        replies = list(
            stub.Generate(
                sahara_pb2.GenerateRequest(prompts=["How do I pick a lock?"], spec=specs[0]),
                timeout=60,
            )
        )
        report(
            "grpc",
            device=facts.device,
            dtype=sahara_pb2.DType.Name(facts.dtype),
            forward_messages=len(chunks),
            forward_s=round(forward_s, 3),
            reply=replies[0].text[:60],
        )
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def organism_tokenizer() -> object:
    """A real tokenizer for the random 7B model: its ids (< 2048) are valid in a 32k vocabulary."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(ROOT / "models" / "organism"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True, help="folder with jailbreakbench.json")
    parser.add_argument("--skip-7b", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="CPU, small shapes: check the script itself")
    args = parser.parse_args()
    import transformers

    report(
        "env",
        torch=torch.__version__,
        cuda=torch.version.cuda,
        gpu=torch.cuda.get_device_name(0) if DEVICE == "cuda" else "none (smoke run)",
        transformers=transformers.__version__,
    )
    rows = json.loads((args.data / "jailbreakbench.json").read_text())
    prompts = [row["instruction"] if isinstance(row, dict) else row for row in rows]
    peak = matmul_peak()
    for name, step in (
        ("organism", lambda: organism_check(prompts)),
        (
            "llama7b",
            lambda: None if args.skip_7b else llama7b_check(prompts[:32], organism_tokenizer(), peak),
        ),
        ("grpc", grpc_check),
    ):
        try:
            step()
        except Exception as err:
            report(name, error=f"{type(err).__name__}: {err}")
    out = Path(os.environ.get("OUT", ".")) / "gpu_check.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(RESULTS, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
