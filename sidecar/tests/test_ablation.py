"""The ablation hooks against the definitions in METHOD.md: weight surgery, uniform attention, causality."""

from __future__ import annotations

import pytest
import torch
from references import uniform_causal, weight_surgery

from sahara_sidecar.ablation import (
    AblationError,
    AblationSpec,
    _LayerFactors,
    _move_factors,
    ablated,
    geometry,
    query_layout,
    row_factors,
    validate_spec,
)
from sahara_sidecar.head_layout import HeadLayout, HeadLayoutError
from sahara_sidecar.prompts import encode

FAMILIES = ("llama", "qwen2", "mistral")
PROMPTS = ["How do I bake bread at home?", "Tell me a fact about Paris, France."]
HEAD_SETS = [
    ((0, 0),),
    ((1, 3),),
    ((2, 1),),
    ((0, 2), (2, 1)),
    ((0, 1), (1, 1), (1, 2), (2, 3)),
]


def token_batch(lm, prompt: str, rows: int = 1) -> torch.Tensor:
    ids = encode([prompt], "paper", lm.tokenizer)[0]
    return torch.tensor([ids] * rows)


def logits(model, input_ids: torch.Tensor, specs=None) -> torch.Tensor:
    with torch.inference_mode():
        if specs is None:
            return model(input_ids=input_ids).logits
        with ablated(model, specs):
            return model(input_ids=input_ids).logits


@pytest.mark.parametrize("family", [*FAMILIES, "phi3"])
@pytest.mark.parametrize("method", ["ua", "sc"])
def test_hooks_equal_weight_surgery(tiny_lms, family, method):
    lm = tiny_lms[family]
    input_ids = token_batch(lm, PROMPTS[0])
    for heads in HEAD_SETS:
        for eps in (1e-5, 0.3):
            spec = AblationSpec(heads=heads, method=method, eps=eps)
            hooked = logits(lm.model, input_ids, [spec])
            surgery = logits(weight_surgery(lm.model, spec), input_ids)
            torch.testing.assert_close(hooked, surgery, atol=1e-5, rtol=0)
            assert not torch.allclose(hooked, logits(lm.model, input_ids), atol=1e-4), "the ablation changed nothing"


@pytest.mark.parametrize("family", FAMILIES)
def test_every_row_its_own_spec_equals_separate_runs(tiny_lms, family):
    lm = tiny_lms[family]
    specs = [
        None,
        AblationSpec(((0, 0),), "ua", 1e-5),
        AblationSpec(((1, 2), (2, 3)), "sc", 1e-5),
        AblationSpec(((0, 1), (2, 0)), "mean", 0.0),
        AblationSpec(((1, 1),), "ua", 0.5),
        AblationSpec(((1, 1),), "sc", 0.0),
    ]
    batch = token_batch(lm, PROMPTS[1], rows=len(specs))
    together = logits(lm.model, batch, specs)
    for row, spec in enumerate(specs):
        alone = logits(lm.model, batch[row : row + 1], None if spec is None else [spec])
        torch.testing.assert_close(together[row], alone[0], atol=1e-5, rtol=0)


def test_row_factors_put_each_rows_factor_at_its_layer_and_head(tiny_lms):
    geo = geometry(tiny_lms["llama"].model)
    specs = [
        None,
        AblationSpec(((0, 0),), "ua", 1e-5),
        AblationSpec(((1, 2), (0, 3)), "sc", 0.25),
        AblationSpec(((0, 1),), "mean", 0.0),
        AblationSpec(),  # clean
        AblationSpec(((1, 2),), "ua", 0.5),
    ]
    plan = row_factors(specs, geo)
    assert plan.rows == 6 and plan.first_layer == 0 and sorted(plan.layers) == [0, 1]
    expected_ua0 = torch.ones(6, geo.num_heads, dtype=torch.float64)
    expected_ua0[1, 0] = 1e-5
    torch.testing.assert_close(plan.layers[0].query_scale, expected_ua0, atol=0, rtol=0)
    expected_sc0 = torch.ones(6, geo.num_heads, dtype=torch.float64)
    expected_sc0[2, 3] = 0.25
    torch.testing.assert_close(plan.layers[0].output_scale, expected_sc0, atol=0, rtol=0)
    assert plan.layers[0].query_mean.nonzero().tolist() == [[3, 1]]
    assert geo.num_heads == 4
    assert plan.layers[1].query_scale[5].tolist() == [1.0, 1.0, 0.5, 1.0]
    assert plan.layers[1].query_scale[:5].eq(1).all()
    assert plan.layers[1].output_scale.ne(1).nonzero().tolist() == [[2, 2]]
    assert plan.layers[1].query_mean is None
    assert row_factors([None, AblationSpec()], geo).layers == {}


@pytest.mark.parametrize("family", [*FAMILIES, "qwen3", "gemma3", "phi3", "gemma3_vision", "mistral3_vision"])
@pytest.mark.parametrize("length", ["prompt", "as many tokens as heads"])
def test_ua_tiny_eps_gives_uniform_causal_attention(eager_lms, family, length):
    """Only the named head's attention becomes uniform, also where q_norm's output is [rows, H, T, d_h]
    (Gemma 3) and T == H, where its shape alone would not tell heads from positions."""
    lm = eager_lms[family]
    geo = lm.geometry
    input_ids = token_batch(lm, PROMPTS[0])
    if length != "prompt":
        input_ids = input_ids[:, : geo.num_heads]
    t = input_ids.shape[1]
    layer, head = 1, 1
    with torch.inference_mode():
        clean = lm.model(input_ids=input_ids, output_attentions=True).attentions[layer][0]
        with ablated(lm.model, [AblationSpec(((layer, head),), "ua", 1e-10)]):
            hit = lm.model(input_ids=input_ids, output_attentions=True).attentions[layer][0]
    torch.testing.assert_close(hit[head], uniform_causal(t), atol=1e-6, rtol=0)
    assert not torch.allclose(clean[head], uniform_causal(t), atol=1e-3)
    for other in range(geo.num_heads):
        if other != head:  # includes the query heads that share head 1's kv head (GQA)
            torch.testing.assert_close(hit[other], clean[other], atol=1e-6, rtol=0)
    if geo.num_kv_heads < geo.num_heads:
        group = geo.num_heads // geo.num_kv_heads
        same_kv = [h for h in range(geo.num_heads) if h // group == head // group and h != head]
        assert same_kv, "GQA fixture should have query heads sharing a kv head"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", ["ua", "sc", "mean"])
def test_ablation_leaves_earlier_residual_stream_bit_identical(tiny_lms, family, method):
    lm = tiny_lms[family]
    input_ids = token_batch(lm, PROMPTS[1], rows=2)
    with torch.inference_mode():
        clean = lm.model(input_ids=input_ids, output_hidden_states=True).hidden_states
        for layer in range(lm.geometry.num_layers):
            spec = AblationSpec(((layer, 2),), method, 1e-5)
            with ablated(lm.model, [spec, spec]):
                hit = lm.model(input_ids=input_ids, output_hidden_states=True).hidden_states
            for upto in range(layer + 1):  # hidden_states[i] is the input of layer i
                assert torch.equal(hit[upto], clean[upto]), (
                    f"{method} at layer {layer} changed the input of layer {upto}"
                )
            assert not torch.equal(hit[layer + 1], clean[layer + 1])


def test_validate_spec_messages(tiny_lms):
    geo = tiny_lms["llama"].geometry
    with pytest.raises(
        AblationError, match=r"specs\[3\]\.heads\[0\] L9H2: layer 9 out of range; the model has 3 layers"
    ):
        validate_spec(AblationSpec(((9, 2),), "ua", 1e-5), geo, where="specs[3]")
    with pytest.raises(AblationError, match=r"heads\[1\] L0H4: head 4 out of range"):
        validate_spec(AblationSpec(((0, 0), (0, 4)), "sc", 1e-5), geo)
    with pytest.raises(AblationError, match="eps"):
        validate_spec(AblationSpec(((0, 0),), "ua", float("nan")), geo)


def test_hooks_are_removed_after_the_block(tiny_lms):
    lm = tiny_lms["llama"]
    input_ids = token_batch(lm, PROMPTS[0])
    before = logits(lm.model, input_ids)
    with pytest.raises(RuntimeError), ablated(lm.model, [AblationSpec(((0, 0),), "sc", 0.0)]):
        raise RuntimeError("boom")
    torch.testing.assert_close(logits(lm.model, input_ids), before, atol=0, rtol=0)


def test_query_layout_is_measured_per_family(tiny_lms):
    """q_proj's output is flat; Qwen3's q_norm sees [rows, T, H, d_h], Gemma 3's [rows, H, T, d_h]."""
    assert query_layout(tiny_lms["llama"].model) == HeadLayout(4)
    assert query_layout(tiny_lms["qwen3"].model) == HeadLayout(4)
    assert query_layout(tiny_lms["gemma3"].model) == HeadLayout(4, heads_before_tokens=True)
    assert query_layout(tiny_lms["phi3"].model) == HeadLayout(4, query_width=4 * 16), "fused: queries first"
    fused = torch.arange(2 * 3 * 8.0).view(1, 2, 24)  # [rows, T, (H=2 + 2*KV=1) * d_h=6]: queries are the first 12
    layout = HeadLayout(2, query_width=12)
    assert torch.equal(layout.split(fused).reshape(1, 2, 12), fused[..., :12])
    assert torch.equal(layout.join(layout.split(fused) * 0, fused)[..., 12:], fused[..., 12:])
    assert not layout.join(layout.split(fused) * 0, fused)[..., :12].any()
    x = torch.arange(2 * 3 * 4 * 5.0).view(2, 3, 4, 5)  # [rows, H=3, T=4, d_h]
    layout = HeadLayout(3, heads_before_tokens=True)
    assert layout.split(x).shape == (2, 4, 3, 5)
    assert torch.equal(layout.join(layout.split(x) * 1, x), x)
    with pytest.raises(HeadLayoutError, match=r"expected 4 heads in a hooked tensor, got shape \(2, 3, 4, 5\)"):
        HeadLayout(4, heads_before_tokens=True).split(x)


def test_factors_stay_float32_whatever_the_weights_dtype():
    """Moved once to the layer's device, in float32: not to a quantized weight's dtype, where
    eps = 1e-5 would round to 0 (float8_e4m3fn)."""
    factors = _LayerFactors(query_scale=torch.tensor([[1e-5, 1.0]], dtype=torch.float64))
    factors.output_scale = torch.tensor([[0.3, 1.0]], dtype=torch.float64)
    _move_factors(factors, torch.device("cpu"))
    assert factors.query_scale.dtype == factors.output_scale.dtype == torch.float32
    assert factors.query_scale[0, 0].item() == pytest.approx(1e-5, rel=1e-7)
    assert torch.tensor(1e-5).to(torch.float8_e4m3fn).float().item() == 0.0  # what the weights' dtype did
