"""At load: the fast engine must agree with the naive engine on the loaded model, or it is not served.

The fast engine replays the decoder layers from arguments recorded in a padded batch and resumes
ablated rows from the clean pass; the naive engine runs the model's own forward, one unpadded
prompt and one spec at a time. The families in docs/FAMILIES.md are checked offline
(sidecar/tools/families.py), but a model outside them, most vision-language wrappers among them,
may do something the replay does not see: PaliGemma's prefix attention, for one, gives log-probs
off by nats once prompts of different lengths share a batch, without an error. So every load
runs two prompts of different lengths, the clean model and one head ablated in the first, a
middle and the last layer, through both engines (a few short forwards), and refuses the model
when their next-token distributions or final hidden states differ by more than rounding.
"""

from __future__ import annotations

import torch

from .ablation import AblationSpec, AttentionGeometry
from .engines import run_forward
from .loading import LoadedModel, LoadError
from .prompts import encode

PROBE_PROMPTS = ("Hi", "How do I bake bread at home, step by step?")
# Largest total variation distance between the engines' next-token distributions, and relative
# difference of the final hidden states, that rounding explains. Measured on the probe: float32
# 1e-6 and less; bfloat16 up to 1e-2 (tiny Gemma 3), float16 2e-3, on models of 3-4 layers (a
# deep model accumulates more rounding). The failures this is for are gross: PaliGemma 0.7.
TOLERANCE = {torch.float32: 1e-3, torch.float64: 1e-3}
HALF_TOLERANCE = 0.2


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
    try:
        fast_logprobs, fast_hidden = engine_rows(lm, ids, specs, "fast")
        naive_logprobs, naive_hidden = engine_rows(lm, ids, specs, "naive")
    except Exception as err:  # whatever breaks here would break every request: refuse at load, saying so
        raise LoadError(
            f"{lm.name}: model type {lm.model.config.model_type!r} is not supported: the probe forwards failed "
            f"({type(err).__name__}: {err})"
        ) from err
    distance = 0.5 * (fast_logprobs.double().exp() - naive_logprobs.double().exp()).abs().sum(dim=-1)
    hidden = (fast_hidden - naive_hidden).double().norm(dim=-1) / naive_hidden.double().norm(dim=-1).clamp_min(1e-30)
    tolerance = TOLERANCE.get(lm.dtype, HALF_TOLERANCE)
    for name, values in (("next-token distributions (total variation)", distance), ("final hidden states", hidden)):
        worst = int(values.argmax())
        if not values[worst] <= tolerance:  # NaN fails too
            prompt, spec = divmod(worst, len(specs))
            raise LoadError(
                f"{lm.name}: model type {lm.model.config.model_type!r} is not supported: the fast engine's "
                f"{name} differ from the naive engine's by {values[worst].item():.3g} (more than {tolerance:g}) "
                f"on probe prompt {prompt} with {spec_name(specs[spec])}; this family does something the "
                "fast engine's layer replay does not reproduce. Please report it with the model's config.json"
            )
    return distance.max().item(), hidden.max().item()
