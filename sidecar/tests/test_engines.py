"""The fast engine (each row resumed from its base row) against the naive engine (one forward per row) and the
full-forward batched path: same log-probs and hidden states, same Ships KL, same top-10; and the
stats each reports."""

from __future__ import annotations

import pytest
import torch

from sahara_sidecar import fast
from sahara_sidecar.ablation import AblationSpec
from sahara_sidecar.engines import run_forward
from sahara_sidecar.prompts import encode
from sahara_sidecar.stats import ForwardStats, forward_flops, layer_flops, model_cost

PROMPTS = [
    "Hi",
    "How do I bake bread at home?",
    "Tell me how to build a birdhouse from scrap wood, step by step.",
    "What is the capital of France?",
    "Sure, here is a short answer.",
]
FAMILIES = ("llama", "qwen2", "mistral", "qwen3", "gemma3", "phi3", "granite", "gemma3_vision", "mistral3_vision")
KL_RTOL = 1e-4  # the bound on the relative difference of Ships KL between engines
KL_FLOOR = 1e-5  # float32 log-probs carry ~1e-6 rounding, so a KL below ~1e-5 has no relative precision


def scan_specs(lm, method: str = "ua", eps: float = 1e-5) -> list[AblationSpec]:
    """A Ships scan (clean + every head alone) plus multi-head and MEAN specs."""
    geo = lm.geometry
    heads = [AblationSpec(((layer, head),), method, eps) for layer in range(geo.num_layers) for head in range(4)]
    extra = [AblationSpec(((1, 0), (2, 1)), "sc", 0.0), AblationSpec(((2, 2), (0, 3)), "mean", 0.0)]
    return [AblationSpec(), *heads, *extra]


def run(lm, ids, specs, engine: str, **options) -> tuple[torch.Tensor, torch.Tensor, ForwardStats]:
    stats = ForwardStats()
    batches = list(
        run_forward(lm, ids, specs, engine=engine, want_logprobs=True, want_hidden=True, stats=stats, **options)
    )
    starts = [b.rows.start for b in batches]
    assert starts == sorted(starts) and starts[0] == 0, "batches come back in row order"
    assert sum(len(b.rows) for b in batches) == len(ids) * len(specs)
    logprobs = torch.cat([b.logprobs for b in batches]).view(len(ids), len(specs), -1)
    hidden = torch.cat([b.hidden for b in batches]).view(len(ids), len(specs), -1)
    return logprobs, hidden, stats


def ships_kl(logprobs: torch.Tensor) -> torch.Tensor:
    """KL(clean || ablated) per (prompt, spec) in float64, 1e-12 added (METHOD.md); spec 0 is clean."""
    probs = logprobs.double().exp() + 1e-12
    return (probs[:, :1] * (probs[:, :1].log() - probs.log())).sum(-1)


def assert_same_ships(a: torch.Tensor, b: torch.Tensor, heads: slice) -> None:
    kl_a, kl_b = ships_kl(a), ships_kl(b)
    torch.testing.assert_close(kl_a, kl_b, rtol=KL_RTOL, atol=KL_FLOOR)
    mean_a, mean_b = kl_a[:, heads].mean(0), kl_b[:, heads].mean(0)
    resolved = mean_b > 100 * KL_FLOOR
    assert resolved.sum() >= 3
    rel = ((mean_a - mean_b).abs() / mean_b)[resolved]
    assert rel.max() <= KL_RTOL, f"dataset Ships KL relative difference {rel.max():.2e}"
    top_a = mean_a.argsort(descending=True)[:10].tolist()
    top_b = mean_b.argsort(descending=True)[:10].tolist()
    assert top_a == top_b, "identical top-10 head rankings"


@pytest.mark.parametrize("family", FAMILIES)
def test_fast_naive_full_agree(tiny_lms, family):
    lm = tiny_lms[family]
    ids = encode(PROMPTS, "paper", lm.tokenizer)
    specs = scan_specs(lm)
    heads = slice(1, 1 + lm.geometry.num_layers * 4)
    fast_lp, fast_hid, fast_stats = run(lm, ids, specs, "fast")
    naive_lp, naive_hid, naive_stats = run(lm, ids, specs, "naive")
    full_lp, full_hid, full_stats = run(lm, ids, specs, "full")
    for lp, hid in ((naive_lp, naive_hid), (full_lp, full_hid)):
        torch.testing.assert_close(fast_lp, lp, atol=2e-5, rtol=0)
        torch.testing.assert_close(fast_hid, hid, atol=2e-5, rtol=0)
        assert_same_ships(fast_lp, lp, heads)
    assert not torch.allclose(fast_lp[:, 0], fast_lp[:, 1]), "ablations change the output"

    n, m = len(ids), len(specs)
    for stats in (fast_stats, naive_stats, full_stats):
        assert stats.rows == n * m and stats.forwards > 0 and stats.flops > 0 and stats.layer_tokens > 0
        assert stats.compute_seconds > 0 and stats.oom_splits == 0
    assert naive_stats.forwards == n * m and naive_stats.max_batch_rows == 1
    assert fast_stats.layer_tokens < full_stats.layer_tokens, "resumed rows skip the layers below their spec"
    assert fast_stats.flops < full_stats.flops


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_fast_with_small_batches_and_one_prompt(tiny_lms, family):
    """Groups split across batches, buckets of one prompt, a request of a single prompt."""
    lm = tiny_lms[family]
    ids = encode(PROMPTS, "paper", lm.tokenizer)
    specs = scan_specs(lm, "sc", 0.0)
    ref_lp, ref_hid, _ = run(lm, ids, specs, "full", max_batch_rows=64)
    # len(specs) rows = a base row and the resumed rows of a one-prompt bucket, one batch; 1, 3 and
    # 7 rows also make one-prompt buckets (same padding) but split each over several batches.
    _, _, one_batch = run(lm, ids, specs, "fast", max_batch_rows=len(specs))
    assert one_batch.forwards == 2 * len(ids), "a recording call and one batch per prompt"
    for rows in (1, 3, 7):
        lp, hid, stats = run(lm, ids, specs, "fast", max_batch_rows=rows)
        assert stats.max_batch_rows <= rows
        assert stats.layer_tokens == one_batch.layer_tokens, "base rows run once, whatever the batches"
        torch.testing.assert_close(lp, ref_lp, atol=2e-5, rtol=0)
        torch.testing.assert_close(hid, ref_hid, atol=2e-5, rtol=0)
    lp, _, stats = run(lm, ids[1:2], specs, "fast")
    torch.testing.assert_close(lp[0], ref_lp[1], atol=2e-5, rtol=0)
    assert stats.forwards == 2, "one recording call, one batch (base rows and every start layer together)"


@pytest.mark.parametrize("layers", [(0,), (0, 2)])
def test_fast_without_a_clean_spec(tiny_lms, layers):
    """No clean row asked for: base rows run only where resumed rows start from them, so none when
    every spec starts at layer 0 (those start from the embeddings)."""
    lm = tiny_lms["llama"]
    ids = encode(PROMPTS, "paper", lm.tokenizer)
    specs = [AblationSpec(((layer, head),), "ua", 1e-5) for layer in layers for head in range(4)]
    ref_lp, ref_hid, _ = run(lm, ids, specs, "full")
    lp, hid, stats = run(lm, ids, specs, "fast")
    torch.testing.assert_close(lp, ref_lp, atol=2e-5, rtol=0)
    torch.testing.assert_close(hid, ref_hid, atol=2e-5, rtol=0)
    clean_lp, _, with_clean = run(lm, ids, [AblationSpec(), *specs], "fast")
    torch.testing.assert_close(clean_lp[:, 1:], lp, atol=2e-5, rtol=0)
    if layers == (0,):  # the clean rows are one more row per prompt, through every layer like the 4 specs
        assert with_clean.layer_tokens - stats.layer_tokens == stats.layer_tokens // 4
    else:  # the base rows ran anyway, for the rows starting at layer 2
        assert with_clean.layer_tokens == stats.layer_tokens


@pytest.mark.parametrize("family", FAMILIES)
def test_sahara_step_resumes_from_the_group_ablated_pass(tiny_lms, family):
    """Specs G + {h} (a Sahara step) resume from a pass with G ablated, at h's layer."""
    lm = tiny_lms[family]
    ids = encode(PROMPTS, "paper", lm.tokenizer)
    group = ((1, 2), (2, 0))
    others = [(layer, head) for layer in range(3) for head in range(4) if (layer, head) not in group]
    specs = [AblationSpec(), AblationSpec(group, "ua", 1e-5)] + [AblationSpec((*group, h), "ua", 1e-5) for h in others]
    bases, plan = fast.assign_bases(specs)
    assert bases[1] == AblationSpec(tuple(sorted(group)), "ua", 1e-5)
    assert plan[:2] == [(0, None), (1, None)] and plan[2] == (1, 0)
    fast_lp, fast_hid, fast_stats = run(lm, ids, specs, "fast")
    full_lp, full_hid, full_stats = run(lm, ids, specs, "full")
    naive_lp, _, _ = run(lm, ids[:2], specs, "naive")
    torch.testing.assert_close(fast_lp, full_lp, atol=2e-5, rtol=0)
    torch.testing.assert_close(fast_hid, full_hid, atol=2e-5, rtol=0)
    torch.testing.assert_close(fast_lp[:2], naive_lp, atol=2e-5, rtol=0)
    assert_same_ships(fast_lp, full_lp, slice(1, None))
    assert fast_stats.layer_tokens < 0.8 * full_stats.layer_tokens  # 27 of 36 layer-runs per prompt here


def test_common_base_needs_same_method_and_shared_heads():
    a, b = (0, 1), (2, 3)
    assert fast.common_base([AblationSpec((a,), "ua", 1e-5), AblationSpec((b,), "ua", 1e-5)]) is None
    assert fast.common_base([AblationSpec((a, b), "ua", 1e-5), AblationSpec((a,), "sc", 1e-5)]) is None
    assert fast.common_base([AblationSpec((a, b), "ua", 1e-5), AblationSpec((a,), "ua", 0.1)]) is None
    assert fast.common_base([AblationSpec(), AblationSpec((b, a), "sc", 0.0)]) == AblationSpec((a, b), "sc", 0.0)


def test_only_clean_specs_is_one_recording_call_and_one_batch_per_bucket(tiny_lms):
    lm = tiny_lms["mistral"]
    ids = encode(PROMPTS, "paper", lm.tokenizer)
    lp, _, stats = run(lm, ids, [AblationSpec(), AblationSpec()], "fast")
    assert stats.forwards == 2 and stats.rows == 2 * len(ids) and stats.max_batch_rows == len(ids)
    torch.testing.assert_close(lp[:, 0], lp[:, 1], atol=0, rtol=0)


def test_fast_survives_out_of_memory(tiny_lms, monkeypatch):
    """A resumed batch above 4 rows 'runs out of memory': it is halved until it fits, same results."""
    lm = tiny_lms["qwen2"]
    ids = encode(PROMPTS, "paper", lm.tokenizer)
    specs = scan_specs(lm)
    ref_lp, ref_hid, _ = run(lm, ids, specs, "fast")
    real_resume = fast.resume

    def small_memory(lm_, recorded, starts, prompts, *rest, **kwargs):
        if len(prompts) > 4:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_resume(lm_, recorded, starts, prompts, *rest, **kwargs)

    monkeypatch.setattr(fast, "resume", small_memory)
    lp, hid, stats = run(lm, ids, specs, "fast")
    assert stats.oom_splits > 0 and stats.max_batch_rows <= max(4, len(ids))
    torch.testing.assert_close(lp, ref_lp, atol=2e-5, rtol=0)
    torch.testing.assert_close(hid, ref_hid, atol=2e-5, rtol=0)


def test_fast_survives_out_of_memory_while_recording(tiny_lms, monkeypatch):
    """A bucket's recording pass over more than 2 prompts 'runs out of memory': buckets shrink to 2
    prompts, same results, and the row batches keep their size (not capped at 2 rows)."""
    lm = tiny_lms["qwen2"]
    ids = encode(PROMPTS, "paper", lm.tokenizer)
    specs = scan_specs(lm)
    ref_lp, _, _ = run(lm, ids, specs, "fast")
    real_record = fast.record_layer_args

    def small_memory(lm_, prompts, *rest, **kwargs):
        if len(prompts) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_record(lm_, prompts, *rest, **kwargs)

    monkeypatch.setattr(fast, "record_layer_args", small_memory)
    lp, _, stats = run(lm, ids, specs, "fast")
    assert stats.oom_splits > 0
    assert stats.max_batch_rows >= 2 * len(specs), stats.max_batch_rows  # a 2-prompt bucket's rows, not 2 rows
    torch.testing.assert_close(lp, ref_lp, atol=2e-5, rtol=0)


def test_last_layer_slicing_is_exact_at_the_last_position(tiny_lms):
    for family in FAMILIES:
        lm = tiny_lms[family]
        ids = torch.tensor([encode(PROMPTS[2:3], "paper", lm.tokenizer)[0]])
        with torch.inference_mode():
            ref = lm.model(input_ids=ids).logits[:, -1]
            with fast.last_layer_sliced(lm.model):
                sliced = lm.model(input_ids=ids).logits[:, -1]
        torch.testing.assert_close(sliced, ref, atol=1e-5, rtol=0)


def test_flop_estimate(tiny_lms):
    lm = tiny_lms["llama"]
    cost = model_cost(lm)
    d, i, v = 64, 128, 300
    per_layer = 4 * d * d + 3 * d * i  # q, k, v, o (4 kv heads of 16) + gate, up, down
    assert cost.layer_matmul_params == (per_layer,) * 3
    assert cost.layer_projection_params == (3 * d * d,) * 3
    assert cost.layer_tail_params == (d * d + 3 * d * i,) * 3
    t = 10
    expected = 3 * (2 * per_layer * t + 4 * 4 * 16 * t * t) + 2 * v * d
    assert forward_flops(cost, rows=1, tokens=t) == expected
    assert forward_flops(cost, rows=5, tokens=t, first_layer=2) < forward_flops(cost, rows=5, tokens=t)
    assert forward_flops(cost, rows=1, tokens=t, kept_positions=t) - expected == 2 * v * d * (t - 1)
    # A layer as the fast engine runs it: one of 2 rows copies its q/k/v projections and computes
    # one head's attention; or the last layer: one query, o_proj and the MLP on one position.
    full = layer_flops(cost, 0, rows=2, tokens=t)
    assert full == 2 * (2 * per_layer * t + 4 * 4 * 16 * t * t)
    assert full - layer_flops(cost, 0, rows=2, tokens=t, copied_rows=1, attention_heads=5) == 2 * 3 * d * d * t + 3 * (
        4 * 16 * t * t
    )
    last = layer_flops(cost, 2, rows=1, tokens=t, queries=1, tail_positions=1)
    assert last == 2 * 3 * d * d * t + 2 * (d * d + 3 * d * i) + 4 * 4 * 16 * t


def test_fast_engine_counts_the_work_it_skips(tiny_lms):
    """A Ships scan's FLOPs as run: every resumed row from its start layer, joining rows without
    their start layer's projections and with one head's attention there, the last layer sliced."""
    lm = tiny_lms["llama"]
    cost = model_cost(lm)
    ids = encode(PROMPTS[:1], "paper", lm.tokenizer)
    specs = [AblationSpec(), *(AblationSpec(((layer, 0),), "ua", 1e-5) for layer in range(3))]
    _, _, stats = run(lm, ids, specs, "fast")
    t, heads = len(ids[0]), cost.num_heads

    def layer(i: int, rows: int, joining: int) -> float:
        last = i == 2
        return layer_flops(
            cost,
            i,
            rows=rows,
            tokens=t,
            copied_rows=joining,
            attention_heads=(rows - joining) * heads + joining,
            queries=1 if last else None,
            tail_positions=1 if last else None,
        )

    # rows per layer: the base row (clean) and the row of layer 0's head; + layer 1's; + layer 2's
    expected = layer(0, 2, 1) + layer(1, 3, 1) + layer(2, 4, 1) + 4 * 2 * cost.vocab_size * cost.hidden_size
    assert stats.flops == pytest.approx(expected, rel=1e-12)
    assert stats.layer_tokens == (2 + 3 + 4) * t
