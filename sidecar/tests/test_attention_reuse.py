"""Attention computed only where a resumed row can differ (attention_reuse): rows joining at their
start layer take their base row's projections and unablated heads; the last layer's attention
runs for the last query alone. The engine-level agreement with the naive engine is in test_engines."""

from __future__ import annotations

import pytest
import torch

from sahara_sidecar import fast
from sahara_sidecar.ablation import AblationError, AblationSpec, ablated, attention_modules, query_projection
from sahara_sidecar.attention_reuse import (
    LayerPlan,
    StartReuse,
    plan_start_reuse,
    planned_attention,
    projections_reused,
    reusable_projections,
)
from sahara_sidecar.engines import run_forward
from sahara_sidecar.prompts import encode

FAMILIES = ("llama", "qwen2", "mistral", "qwen3", "gemma3", "phi3")
PROMPTS = ["How do I bake bread at home?", "Hi there"]  # different lengths: left padding, a 4-D mask
LAYER = 1


def attention_call(lm, prompts: list[int]):
    """The attention module of LAYER and what its decoder layer passes it, for rows of these prompts."""
    recorded = fast.record_layer_args(lm, encode(PROMPTS, "paper", lm.tokenizer))
    kwargs = fast._RowSelector(len(PROMPTS), torch.tensor(prompts))(recorded.calls[LAYER].kwargs)
    return attention_modules(lm.model)[LAYER], kwargs, recorded.width


def per_group(lm) -> int:
    return lm.geometry.num_heads // lm.geometry.num_kv_heads


@pytest.mark.parametrize("family", FAMILIES)
def test_joining_rows_take_everything_but_their_ablated_heads_from_their_base_rows(tiny_lms, family):
    """Rows 2.. join at LAYER, one head ablated each. Their own inputs are garbage here: with reuse,
    their output is what their base row's input gives under their spec, so nothing of their own
    input was used (in the engine the two inputs are equal)."""
    lm = tiny_lms[family]
    geo = lm.geometry
    joining = [(b, h) for b in range(len(PROMPTS)) for h in range(geo.num_heads)]
    prompts = [0, 1, *(b for b, _ in joining)]
    specs = [AblationSpec(), AblationSpec(), *(AblationSpec(((LAYER, h),), "ua", 1e-5) for _, h in joining)]
    attn, kwargs, width = attention_call(lm, prompts)
    torch.manual_seed(0)
    base_inputs = torch.randn(len(PROMPTS), width, geo.hidden_size)
    garbage = torch.randn(len(joining), width, geo.hidden_size)
    reuse = plan_start_reuse(LAYER, 2, [0, 1], prompts[2:], specs[:2], specs[2:], per_group(lm), lm.device)
    assert reuse is not None and reuse.split == 2
    assert reuse.base_of.tolist() == prompts[2:]
    assert reuse.fresh_heads == len(joining) * per_group(lm), "one kv group per joining row"
    with torch.inference_mode(), ablated(lm.model, specs):
        expected, _ = attn(hidden_states=base_inputs[torch.tensor(prompts)], **kwargs)
        with planned_attention(lm.model) as plans, projections_reused(attn, reuse):
            assert plans is not None, "tiny models use sdpa"
            plans[attn] = LayerPlan(last_query_only=False, reuse=reuse)
            got, _ = attn(hidden_states=torch.cat([base_inputs, garbage]), **kwargs)
        unplanned, _ = attn(hidden_states=torch.cat([base_inputs, garbage]), **kwargs)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(unplanned[2:], expected[2:], atol=1e-3), "outside the context nothing is reused"
    assert "forward" not in query_projection(attn).__dict__, "the projections are restored"


@pytest.mark.parametrize("family", FAMILIES)
def test_last_query_only_is_exact_at_the_last_position(tiny_lms, family):
    lm = tiny_lms[family]
    prompts = [0, 1, 0]
    specs = [AblationSpec(), AblationSpec(((LAYER, 1),), "ua", 1e-5), AblationSpec(((LAYER, 2),), "mean", 0.0)]
    attn, kwargs, width = attention_call(lm, prompts)
    hidden = torch.randn(len(prompts), width, lm.geometry.hidden_size)
    with torch.inference_mode(), ablated(lm.model, specs):
        expected, _ = attn(hidden_states=hidden, **kwargs)
        with planned_attention(lm.model) as plans:
            plans[attn] = LayerPlan(last_query_only=True, reuse=None)
            got, _ = attn(hidden_states=hidden, **kwargs)
    torch.testing.assert_close(got[:, -1], expected[:, -1], atol=1e-5, rtol=1e-5)


def test_fresh_heads_are_the_kv_groups_ablated_in_the_row_or_its_base():
    group_g = AblationSpec(((1, 3), (2, 0)), "ua", 1e-5)  # a Sahara step's base: G ablated
    joining = [AblationSpec(((1, 3), (2, 0), (1, 0)), "ua", 1e-5), AblationSpec(((1, 3), (2, 0), (1, 2)), "ua", 1e-5)]
    reuse = plan_start_reuse(1, 5, [7, 8], [8, 7], [group_g, group_g], joining, 2, torch.device("cpu"))
    assert isinstance(reuse, StartReuse)
    assert reuse.base_of.tolist() == [1, 0]
    # kv groups of 2 query heads: row 5 has heads 0 and 3 -> groups 0, 1; row 6 heads 2, 3 -> group 1
    assert list(zip(reuse.pair_rows.tolist(), reuse.pair_groups.tolist(), strict=True)) == [(5, 0), (5, 1), (6, 1)]
    assert reuse.fresh_heads == 6
    assert plan_start_reuse(1, 5, [7], [8, 7], [group_g], joining, 2, torch.device("cpu")) is None, "no base row of 8"


def test_prefix_batches_use_the_first_rows_factors(tiny_lms):
    lm = tiny_lms["llama"]
    ids = torch.tensor(encode(PROMPTS[:1], "paper", lm.tokenizer) * 3)
    specs = [AblationSpec(((0, 1),), "ua", 1e-5), AblationSpec(), AblationSpec(((1, 2),), "sc", 0.0)]
    with torch.inference_mode():
        with ablated(lm.model, specs):
            every_row = lm.model(input_ids=ids).logits
        with ablated(lm.model, specs, prefixes=True):
            first_two = lm.model(input_ids=ids[:2]).logits
        torch.testing.assert_close(first_two, every_row[:2], atol=1e-5, rtol=0)
        with ablated(lm.model, specs), pytest.raises(AblationError, match="batch has 2 rows"):
            lm.model(input_ids=ids[:2])
        with ablated(lm.model, specs, prefixes=True), pytest.raises(AblationError, match="batch has 4 rows"):
            lm.model(input_ids=torch.cat([ids, ids[:1]]))


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_eager_attention_runs_without_reuse_and_agrees(eager_lms, family):
    lm = eager_lms[family]
    ids = encode(PROMPTS, "paper", lm.tokenizer)
    specs = [AblationSpec(), *(AblationSpec(((layer, 0),), "ua", 1e-5) for layer in range(3))]
    with planned_attention(lm.model) as plans:
        assert plans is None, "only sdpa's interface entry is wrapped"

    def logprobs(engine: str) -> torch.Tensor:
        rows = run_forward(lm, ids, specs, engine=engine, want_logprobs=True, want_hidden=False)
        return torch.cat([batch.logprobs for batch in rows])

    torch.testing.assert_close(logprobs("fast"), logprobs("full"), atol=2e-5, rtol=0)


def test_only_plain_linear_projections_are_replayed():
    """A quantized layer subclasses nn.Linear but computes its own forward (FP8, BitNet):
    replaying it as F.linear(x, weight, bias) would be wrong, so it is not reused."""

    class QuantizedLinear(torch.nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x.round())

    attention = torch.nn.Module()
    attention.q_proj, attention.k_proj = torch.nn.Linear(4, 4), QuantizedLinear(4, 4)
    attention.v_proj = torch.nn.Linear(4, 4)
    assert reusable_projections(attention) == [attention.q_proj, attention.v_proj]
