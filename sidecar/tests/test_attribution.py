"""First-order attribution: the gradient plumbing against exact ablations, and its ranking."""

from __future__ import annotations

import pytest
import torch

from sahara_sidecar.ablation import AblationError, AblationSpec
from sahara_sidecar.attribution import attribute
from sahara_sidecar.engines import run_forward
from sahara_sidecar.prompts import encode
from sahara_sidecar.stats import ForwardStats

PROMPTS = ["How do I bake bread at home?", "Tell me a fact about Paris, France.", "Hi"]


def attribution(lm, ids, method, eps, **options) -> tuple[torch.Tensor, ForwardStats]:
    stats = ForwardStats()
    batches = list(attribute(lm, ids, method=method, eps=eps, stats=stats, **options))
    assert [b.prompts.start for b in batches] == sorted(b.prompts.start for b in batches)
    return torch.cat([b.attribution for b in batches]), stats


def exact_changes(lm, ids, method, eps) -> torch.Tensor:
    """|log p_ablated(t*) - log p_clean(t*)| per prompt and head, by Forward."""
    geo = lm.geometry
    specs = [AblationSpec()] + [
        AblationSpec(((layer, head),), method, eps) for layer in range(geo.num_layers) for head in range(geo.num_heads)
    ]
    batches = run_forward(lm, ids, specs, engine="fast", want_logprobs=True, want_hidden=False)
    logprobs = torch.cat([b.logprobs for b in batches]).view(len(ids), len(specs), -1).double()
    top = logprobs[:, 0].argmax(-1)
    at_top = logprobs.gather(2, top[:, None, None].expand(-1, len(specs), 1))[..., 0]
    return (at_top[:, 1:] - at_top[:, :1]).abs().view(len(ids), geo.num_layers, geo.num_heads)


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3", "gemma3", "phi3"])
@pytest.mark.parametrize("method", ["ua", "sc"])
def test_small_step_matches_exact_change(tiny_lms, family, method):
    """For eps near 1 the first-order estimate is the exact change of log p(t*), up to second order
    (at eps 0.99 that is already 5-15% on these random models, so 0.999)."""
    lm = tiny_lms[family]
    ids = encode(PROMPTS, "paper", lm.tokenizer)
    estimate, stats = attribution(lm, ids, method, 0.999, max_batch_rows=2)
    assert estimate.shape == (3, lm.geometry.num_layers, lm.geometry.num_heads) and estimate.dtype == torch.float32
    exact = exact_changes(lm, ids, method, 0.999).float()
    torch.testing.assert_close(estimate, exact, rtol=0.05, atol=1e-5)  # float32 log-probs: ~1e-6 noise
    assert stats.forwards == 2 and stats.rows == 3 and stats.max_batch_rows == 2 and stats.flops > 0


def test_padding_does_not_change_attribution(tiny_lms):
    lm = tiny_lms["mistral"]
    ids = encode(PROMPTS, "paper", lm.tokenizer)
    together, _ = attribution(lm, ids, "ua", 1e-5)
    alone = torch.cat([attribution(lm, [row], "ua", 1e-5)[0] for row in ids])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)


def test_mean_is_refused(tiny_lms):
    lm = tiny_lms["llama"]
    with pytest.raises(AblationError, match="UA and SC"):
        list(attribute(lm, [[1, 5, 6]], method="mean", eps=0.0))


def test_gradients_do_not_leak_into_the_model(tiny_lms):
    lm = tiny_lms["llama"]
    list(attribute(lm, encode(PROMPTS[:1], "paper", lm.tokenizer), method="sc", eps=0.0))
    assert all(p.grad is None for p in lm.model.parameters())
