"""Which transformers model families the sidecar serves correctly: a table, one row per family.

For each model type: a tiny random model built from its config (3 layers, 4 query heads over 2
kv heads, d 64; no weights downloaded), saved with a tiny tokenizer and loaded the way the
sidecar loads models. Then three checks:
  - targeting: with eager attention, UA at eps 1e-10 on L1H1 makes exactly that head's attention
    uniform over its causal window and leaves the other heads' patterns unchanged (on a prompt of
    as many tokens as heads, where a head axis read as a token axis would not crash);
  - SC: the hooks at eps 0 give the logits of the same head's W_o columns zeroed in the weights;
  - engines: the fast engine's log-probs and final-norm hidden states equal the naive engine's for
    every single-head spec of every layer, by UA, SC and MEAN (max |difference|).

Usage: sidecar/.venv/bin/python sidecar/tools/families.py [model_type ...]  (default: a broad list)
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

import torch

SIDECAR = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(SIDECAR), str(SIDECAR / "tests")]

from references import uniform_causal, weight_surgery  # noqa: E402
from tiny_models import build_tokenizer, common_config, save_from_config  # noqa: E402
from transformers import AutoConfig  # noqa: E402

from sahara_sidecar.ablation import AblationSpec, ablated  # noqa: E402
from sahara_sidecar.engines import run_forward  # noqa: E402
from sahara_sidecar.fast import reuse_supported  # noqa: E402
from sahara_sidecar.loading import load, model_class, wrap  # noqa: E402
from sahara_sidecar.prompts import encode  # noqa: E402

DEFAULT_TYPES = [
    "llama",
    "mistral",
    "mixtral",
    "qwen2",
    "qwen2_moe",
    "qwen3",
    "qwen3_moe",
    "gemma",
    "gemma2",
    "gemma3_text",
    "phi3",
    "olmo",
    "olmo2",
    "olmo3",
    "olmoe",
    "granite",
    "granitemoe",
    "cohere",
    "cohere2",
    "stablelm",
    "starcoder2",
    "glm",
    "glm4",
    "glm4_moe",
    "smollm3",
    "arcee",
    "exaone4",
    "seed_oss",
    "apertus",
    "ernie4_5",
    "bitnet",
    "doge",
    "nemotron",
    "gpt_oss",
    "llama4_text",
    # vision-language models, served on text prompts through their language model
    "mistral3",
    "llava",
    "llava_next",
    "idefics3",
    "internvl",
    "aya_vision",
    "qwen3_vl",
    "paligemma",
    "phi",
    "gpt_neox",
    "falcon",
    "gpt2",
    "lfm2",
    "qwen3_next",
]
PROMPTS = ["How do I bake bread at home?", "Tell me how to build a birdhouse.", "Hi"]
TARGET = (1, 1)  # layer, head
# Output scalings some families apply around lm_head, set away from their defaults (often 1).
HEAD_KNOBS = {"logits_scaling": 8.0, "logit_scale": 0.25, "final_logit_softcapping": 3.0}
# A vision tower's size does not matter here (prompts are text): one small layer, where the config has the key.
TINY_VISION = dict(num_hidden_layers=1, hidden_size=32, intermediate_size=64, num_attention_heads=2, head_dim=16)


def tiny_model(model_type: str, directory: Path) -> None:
    tokenizer = build_tokenizer()
    config = AutoConfig.for_model(model_type)
    tiny_text = dict(num_key_value_heads=2, **common_config(tokenizer))
    if config.get_text_config() is config:
        config = AutoConfig.for_model(model_type, **tiny_text)
    else:  # a vision-language model: the tiny decoder as its text config, a one-layer vision tower
        text = AutoConfig.for_model(config.get_text_config().model_type, **tiny_text)
        vision = config.vision_config.to_dict()
        vision.update({key: value for key, value in TINY_VISION.items() if key in vision})
        config = AutoConfig.for_model(model_type, text_config=text.to_dict(), vision_config=vision)
    for knob, value in HEAD_KNOBS.items():  # exercise what the family does around lm_head
        for where in (config, config.get_text_config()):
            if getattr(where, knob, None) is not None:
                setattr(where, knob, value)
    save_from_config(config, tokenizer, directory)


def targeting_error(directory: Path) -> float:
    """Max |attention - expected| over the heads of layer TARGET[0] (0: only the named head, uniform)."""
    auto_class = model_class(AutoConfig.from_pretrained(directory))
    model = auto_class.from_pretrained(directory, attn_implementation="eager", dtype=torch.float32).eval()
    lm = wrap(str(directory), model, None)
    layer, head = TARGET
    ids = torch.arange(3, 3 + lm.geometry.num_heads)[None]  # T == H
    with torch.inference_mode():
        clean = model(input_ids=ids, output_attentions=True).attentions[layer][0]
        with ablated(model, [AblationSpec((TARGET,), "ua", 1e-10)]):
            hit = model(input_ids=ids, output_attentions=True).attentions[layer][0]
    # Rows renormalised: with attention sinks (gpt-oss) a uniform head still leaves the sink its share.
    hit = hit / hit.sum(dim=-1, keepdim=True)
    expected = clean / clean.sum(dim=-1, keepdim=True)
    expected[head] = uniform_causal(ids.shape[1])
    return (hit - expected).abs().max().item()


def sc_surgery_difference(directory: Path) -> float:
    """Max |logit difference| between SC at eps 0 on TARGET by the hooks and the same head's W_o
    columns zeroed in a copy of the weights (the definition of SC as a weight edit)."""
    lm = load(str(directory), "cpu", "float32")
    spec = AblationSpec((TARGET,), "sc", 0.0)
    edited = weight_surgery(lm.model, spec)
    ids = torch.tensor(encode(PROMPTS[:1], "paper", lm.tokenizer))
    with torch.inference_mode():
        with ablated(lm.model, [spec]):
            hooked = lm.model(input_ids=ids).logits
        return (hooked - edited(input_ids=ids).logits).abs().max().item()


def engines_difference(directory: Path) -> tuple[float, str]:
    lm = load(str(directory), "cpu", "float32")
    geo = lm.geometry
    ids = encode(PROMPTS, "paper", lm.tokenizer)
    worst, runs = 0.0, {}
    for method, eps in (("ua", 1e-5), ("sc", 0.0), ("mean", 0.0)):
        specs = [AblationSpec()] + [
            AblationSpec(((layer, head),), method, eps)
            for layer in range(geo.num_layers)
            for head in range(geo.num_heads)
        ]
        for e in ("fast", "naive"):  # log-probs (Ships) and final-norm hidden states (Sahara)
            results = list(run_forward(lm, ids, specs, engine=e, want_logprobs=True, want_hidden=True))
            runs[e] = [torch.cat([getattr(r, field) for r in results]) for field in ("logprobs", "hidden")]
        worst = max(worst, *((f - n).abs().max().item() for f, n in zip(runs["fast"], runs["naive"], strict=True)))
    return worst, "resumed" if reuse_supported(lm) else "full rows"


def main() -> None:
    warnings.filterwarnings("ignore")
    print(
        "| model type | UA targets only the named head (max error) | SC = its W_o columns zeroed (max abs diff) "
        "| fast engine path | max abs diff fast vs naive (log-probs, hidden) |"
    )
    print("| --- | --- | --- | --- | --- |")
    for model_type in sys.argv[1:] or DEFAULT_TYPES:
        directory = Path(tempfile.mkdtemp()) / model_type
        try:
            tiny_model(model_type, directory)
            target = targeting_error(directory)
            surgery = sc_surgery_difference(directory)
            difference, path = engines_difference(directory)
            verdicts = ["yes" if error < 1e-5 else "NO" for error in (target, surgery)]
            print(
                f"| {model_type} | {verdicts[0]} ({target:.1e}) | {verdicts[1]} ({surgery:.1e}) | {path} "
                f"| {difference:.1e} |",
                flush=True,
            )
        except Exception as err:  # a row per family, whatever fails
            reason = (str(err).replace(f"{directory}: ", "").splitlines() or [""])[0][:140]
            print(f"| {model_type} | not served: {type(err).__name__}: {reason} | | | |", flush=True)


if __name__ == "__main__":
    main()
