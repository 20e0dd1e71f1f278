"""At load: UA's query scaling must reach the attention kernel, or the model is not served.

UA and MEAN act on a head's query where the family computes it (q_proj's output, or q_norm's where
the family normalises queries per head). A family that normalises queries later, out of the
hooks' sight, undoes the scaling: Llama 4's weightless qk_norm after the rotary embedding turns
UA's query x 1e-5 into about x 1e-2, so "ablated" heads still attend, and nothing fails. So every
load runs layer 0 on a probe prompt, clean and with one head's query scaled by 1/2, and compares
the queries that reach the attention function: the named head's must be half the clean one
(rotary embeddings and temperature factors keep ratios), every other head's unchanged.
"""

from __future__ import annotations

import torch
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .ablation import AblationSpec, ablated, attention_modules
from .loading import LoadedModel, LoadError
from .prompts import encode

PROBE_PROMPT = "How do I bake bread at home, step by step?"
SCALE = 0.5  # far from 1 and from 0, so that no norm's epsilon matters
TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-4}
HALF_TOLERANCE = 2e-2


class _Captured(Exception):
    """Raised once layer 0's attention has its query: nothing after it is needed."""


def queries_reaching_attention(lm: LoadedModel, ids: torch.Tensor, spec: AblationSpec | None) -> torch.Tensor | None:
    """Layer 0's query as its attention function receives it, [batch, heads, T, d_h]; None where the
    model's attention implementation is not one transformers dispatches by name (eager)."""
    first = attention_modules(lm.model)[0]
    implementation = getattr(getattr(first, "config", lm.model.config), "_attn_implementation", None)
    original = ALL_ATTENTION_FUNCTIONS.get(implementation) if implementation else None
    if original is None:
        return None
    captured: list[torch.Tensor] = []

    def capture(module, query, *args, **kwargs):
        if module is first:
            captured.append(query.detach().clone())
            raise _Captured
        return original(module, query, *args, **kwargs)

    ALL_ATTENTION_FUNCTIONS[implementation] = capture
    try:
        with torch.inference_mode(), ablated(lm.model, [spec]):
            lm.model(input_ids=ids, use_cache=False)
    except _Captured:
        pass
    finally:
        ALL_ATTENTION_FUNCTIONS[implementation] = original
    return captured[0] if captured else None


def check_query_ablation(lm: LoadedModel) -> float | None:
    """The largest deviation from the expected queries (relative); None where it cannot be measured."""
    geo = lm.geometry
    head = geo.num_heads - 1
    ids = torch.tensor(encode([PROBE_PROMPT], "paper", lm.tokenizer), device=lm.device)
    try:
        clean = queries_reaching_attention(lm, ids, None)
        hit = queries_reaching_attention(lm, ids, AblationSpec(((0, head),), "ua", SCALE))
    except Exception as err:  # whatever breaks here would break every request: refuse at load, saying so
        raise LoadError(
            f"{lm.name}: model type {lm.model.config.model_type!r} is not supported: the probe forward failed "
            f"({type(err).__name__}: {err})"
        ) from err
    if clean is None or hit is None:
        return None
    if clean.shape[1] != geo.num_heads:  # not [batch, heads, T, d_h]: a layout this check does not know
        return None
    expected = clean.clone()
    expected[:, head] *= SCALE
    per_head = (0, 2, 3)
    error = torch.linalg.vector_norm((hit - expected).double(), dim=per_head)
    deviation = error / torch.linalg.vector_norm(clean.double(), dim=per_head).clamp_min(1e-30)
    worst = int(deviation.argmax())
    tolerance = TOLERANCE.get(lm.dtype, HALF_TOLERANCE)
    if not deviation[worst] <= tolerance:
        ratio = (hit[:, head].double().norm() / clean[:, head].double().norm().clamp_min(1e-30)).item()
        raise LoadError(
            f"{lm.name}: model type {lm.model.config.model_type!r} is not supported: UA's query scaling does not "
            f"reach attention (layer 0, head {head}: query x {SCALE} arrives as x {ratio:.3g}; head {worst} is off "
            f"by {deviation[worst].item():.3g} relative). The family changes queries after the query projection "
            "(and after q_norm) in a way the ablation hooks do not see"
        )
    return deviation.max().item()
