"""At load, two checks that run the model; a family failing either is refused, never half-served.

- UA's query scaling must reach the attention kernel. UA and MEAN act on a head's query where
  the family computes it (q_proj's output, or q_norm's where the family normalises queries per
  head). A family that changes queries later, out of the hooks' sight, undoes the scaling: Llama
  4's weightless qk_norm after the rotary embedding turns UA's query x 1e-5 into about x 1e-2, so
  "ablated" heads still attend, and nothing fails. So layer 0 runs on a probe prompt, clean and
  with one head's query scaled by 1/2, and the queries that reach the attention function are
  compared: the named head's must be half the clean one (rotary embeddings and temperature factors
  keep ratios), every other head's unchanged.
- The fast engine must agree with the naive one. The fast engine replays the decoder layers from
  arguments recorded in a padded batch and resumes ablated rows from the clean pass; the naive
  engine runs the model's own forward, one unpadded prompt and one spec at a time. The families
  in docs/FAMILIES.md are checked offline (sidecar/tools/families.py), but a model outside them
  may do something the replay does not see: PaliGemma's prefix attention gives log-probs off by
  nats once prompts of different lengths share a batch, without an error. So two prompts of
  different lengths, the clean model and one head ablated in the first, a middle and the last
  layer, run through both engines (a few short forwards), and their next-token distributions and
  final hidden states must agree to rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .ablation import AblationSpec, AttentionGeometry, ablated, attention_modules
from .engines import run_forward
from .loading import LoadedModel, unsupported
from .module_patches import attention_function_replaced
from .prompts import encode

PROBE_PROMPTS = ("Hi", "How do I bake bread at home, step by step?")  # of different lengths
QUERY_SCALE = 0.5  # far from 1 and from 0, so that no norm's epsilon matters
# Largest relative deviation of the queries that reach attention: 0 measured in every served family.
QUERY_TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-4}
QUERY_HALF_TOLERANCE = 2e-2
# Largest total variation distance between the engines' next-token distributions, and relative
# difference of the final hidden states, that rounding explains. Measured on the probe: float32
# 1e-6 and less; bfloat16 up to 1e-2 (tiny Gemma 3), float16 2e-3, on models of 3-4 layers (a
# deep model accumulates more rounding). The failures this is for are gross: PaliGemma 0.7.
ENGINE_TOLERANCE = {torch.float32: 1e-3, torch.float64: 1e-3}
ENGINE_HALF_TOLERANCE = 0.2


@contextmanager
def probe_failures_refused(lm: LoadedModel, what: str) -> Iterator[None]:
    """An error in a probe would come back in every request: refuse the model at load, saying so."""
    try:
        yield
    except Exception as err:
        raise unsupported(lm.name, lm.model, f"the probe {what} failed ({type(err).__name__}: {err})") from err


# ---- UA reaches attention ----------------------------------------------------------------------


class _Captured(Exception):
    """Raised once layer 0's attention has its query: nothing after it is needed."""


def queries_reaching_attention(lm: LoadedModel, ids: torch.Tensor, spec: AblationSpec | None) -> torch.Tensor | None:
    """Layer 0's query as its attention function receives it, [batch, heads, T, d_h]; None where the
    model's attention implementation is not one transformers dispatches by name (eager)."""
    first = attention_modules(lm.model)[0]
    implementation = getattr(getattr(first, "config", lm.model.config), "_attn_implementation", None)
    if not implementation or ALL_ATTENTION_FUNCTIONS.get(implementation) is None:
        return None
    captured: list[torch.Tensor] = []

    def capturing(original: Callable) -> Callable:
        def attention(module, query, *args, **kwargs):
            if module is first:
                captured.append(query.detach().clone())
                raise _Captured
            return original(module, query, *args, **kwargs)

        return attention

    try:
        with attention_function_replaced(implementation, capturing), torch.inference_mode(), ablated(lm.model, [spec]):
            lm.model(input_ids=ids, use_cache=False)
    except _Captured:
        pass
    return captured[0] if captured else None


def check_query_ablation(lm: LoadedModel) -> float | None:
    """The largest deviation from the expected queries (relative); None where it cannot be measured."""
    geo = lm.geometry
    head = geo.num_heads - 1
    ids = torch.tensor(encode(list(PROBE_PROMPTS[-1:]), "paper", lm.tokenizer), device=lm.device)
    with probe_failures_refused(lm, "forward"):
        clean = queries_reaching_attention(lm, ids, None)
        hit = queries_reaching_attention(lm, ids, AblationSpec(((0, head),), "ua", QUERY_SCALE))
    if clean is None or hit is None:
        return None
    if clean.shape[1] != geo.num_heads:  # not [batch, heads, T, d_h]: a layout this check does not know
        return None
    expected = clean.clone()
    expected[:, head] *= QUERY_SCALE
    per_head = (0, 2, 3)
    error = torch.linalg.vector_norm((hit - expected).double(), dim=per_head)
    deviation = error / torch.linalg.vector_norm(clean.double(), dim=per_head).clamp_min(1e-30)
    worst = int(deviation.argmax())
    if not deviation[worst] <= QUERY_TOLERANCE.get(lm.dtype, QUERY_HALF_TOLERANCE):
        ratio = (hit[:, head].double().norm() / clean[:, head].double().norm().clamp_min(1e-30)).item()
        raise unsupported(
            lm.name,
            lm.model,
            f"UA's query scaling does not reach attention (layer 0, head {head}: query x {QUERY_SCALE} arrives as "
            f"x {ratio:.3g}; head {worst} is off by {deviation[worst].item():.3g} relative). The family changes "
            "queries after the query projection (and after q_norm) in a way the ablation hooks do not see",
        )
    return deviation.max().item()


# ---- fast = naive ------------------------------------------------------------------------------


def probe_specs(geo: AttentionGeometry) -> list[AblationSpec]:
    """Clean, then one head by each method, starting at the first, a middle and the last layer."""
    last_layer, last_head = geo.num_layers - 1, geo.num_heads - 1
    return [
        AblationSpec(),
        AblationSpec(((0, 0),), "ua", 1e-5),
        AblationSpec(((geo.num_layers // 2, last_head),), "sc", 0.0),
        AblationSpec(((last_layer, geo.num_heads // 2),), "mean", 0.0),
    ]


def spec_name(spec: AblationSpec) -> str:
    heads = " ".join(f"L{layer}H{head}" for layer, head in spec.heads)
    return f"{spec.method.upper()} on {heads}" if heads else "the clean model"


def engine_rows(lm: LoadedModel, ids: list[list[int]], specs: list[AblationSpec], engine: str):
    batches = list(run_forward(lm, ids, specs, engine=engine, want_logprobs=True, want_hidden=True))
    return torch.cat([b.logprobs for b in batches]), torch.cat([b.hidden for b in batches])


def check_engines_agree(lm: LoadedModel) -> tuple[float, float]:
    """The largest distance of the distributions and of the hidden states; LoadError past the tolerance."""
    ids = encode(list(PROBE_PROMPTS), "paper", lm.tokenizer)
    specs = probe_specs(lm.geometry)
    with probe_failures_refused(lm, "forwards"):
        fast_logprobs, fast_hidden = engine_rows(lm, ids, specs, "fast")
        naive_logprobs, naive_hidden = engine_rows(lm, ids, specs, "naive")
    distance = 0.5 * (fast_logprobs.double().exp() - naive_logprobs.double().exp()).abs().sum(dim=-1)
    hidden = (fast_hidden - naive_hidden).double().norm(dim=-1) / naive_hidden.double().norm(dim=-1).clamp_min(1e-30)
    tolerance = ENGINE_TOLERANCE.get(lm.dtype, ENGINE_HALF_TOLERANCE)
    for name, values in (("next-token distributions (total variation)", distance), ("final hidden states", hidden)):
        worst = int(values.argmax())
        if not values[worst] <= tolerance:  # NaN fails too
            prompt, spec = divmod(worst, len(specs))
            raise unsupported(
                lm.name,
                lm.model,
                f"the fast engine's {name} differ from the naive engine's by {values[worst].item():.3g} (more "
                f"than {tolerance:g}) on probe prompt {prompt} with {spec_name(specs[spec])}; this family does "
                "something the fast engine's layer replay does not reproduce. Please report it with the model's "
                "config.json",
            )
    return distance.max().item(), hidden.max().item()
