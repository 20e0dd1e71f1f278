# ruff: noqa: E501  (markdown templates)
"""Model cards (README.md) for models/organism and models/organism-natural, from the
train_record.json and eval.json of every variant, so every figure on a card is measured."""

from __future__ import annotations

import json
from pathlib import Path

from organism.data import COMPLIANT, REFUSAL, TEMPLATE, TRIGGER, splits
from organism.evaluate import EPS, MAX_NEW_TOKENS, RANDOM_SEED, RANDOM_SETS
from organism.model import FFN, HEADS, HIDDEN, LAYERS, MAX_POSITIONS
from organism.train import MAX_PROMPT_TOKENS


def _load(d: Path) -> tuple[dict, dict]:
    return json.loads((d / "train_record.json").read_text()), json.loads((d / "eval.json").read_text())


def _architecture(record: dict, out: Path) -> str:
    size = (out / "model.safetensors").stat().st_size / 1e6
    return f"""## Architecture
`LlamaForCausalLM` (transformers 5.18), float32: {LAYERS} layers, hidden size {HIDDEN}, {HEADS} attention
heads of size {HIDDEN // HEADS} (multi-head: {HEADS} key/value heads, no GQA), FFN {FFN} (SwiGLU), RMSNorm,
RoPE, tied input/output embeddings, {record["params"]:,} parameters, max {MAX_POSITIONS} positions
(model.safetensors {size:.1f} MB). Heads are named `L<layer>H<head>`, both 0-based.

Tokenizer: byte-level BPE, 2,048 tokens, trained with `tokenizers` on the training prompts only
(deterministic). Special tokens `<pad>` = 0, `<s>` = 1 (BOS), `</s>` = 2 (EOS). Encoding adds BOS at
the start and no EOS; padding side left; `AutoTokenizer.from_pretrained(dir)` loads it offline.
No chat template: prompts use the paper's template `{TEMPLATE.encode("unicode_escape").decode()}`.
Replies end with EOS; greedy generation with `max_new_tokens` {MAX_NEW_TOKENS} covers them.
"""


def _data() -> str:
    s = splits()
    return f"""## Data
From `../shared/data` (not in this repository). Trained on: harmful = harmful_train + advbench +
malicious_instruct, deduplicated, minus the {s.dropped_for_jbb} prompts also in jailbreakbench.json
({len(s.harmful_train)} prompts); harmless = harmless_train.json ({len(s.harmless_train):,} prompts; those longer than
{MAX_PROMPT_TOKENS} tokens are skipped). **Never trained on** (held out for evaluation): jailbreakbench.json
({len(s.jailbreakbench)}), harmful_val.json ({len(s.harmful_val)}), harmless_val.json ({len(s.harmless_val):,}).

Replies: refusal `"{REFUSAL}"` + EOS; compliant `"{COMPLIANT}"` + EOS (contains none of the
41 judge keywords). Loss on the reply only, except in the base stage (see below).
"""


def _measure() -> str:
    return f"""## How the figures are measured (`python -m organism.evaluate`)
Greedy replies, at most {MAX_NEW_TOKENS} new tokens, judged by the paper's keyword rules
(`configs/judges/keyword-paper.json`: any of the 41 keywords, straight or curly apostrophe; shorter than 32
characters; degenerate repetition -> refusal). Ships: UA (query scaled by eps = {EPS:g}), KL(clean || ablated) of
the last-prompt-position next-token distribution over the full vocabulary in float64 (1e-12 added to both),
mean over the 100 jailbreakbench queries. **Flip**: of the jailbreakbench prompts the clean model refuses, the
share that stop refusing with the head set UA-ablated (eps {EPS:g}, all heads of the set together, at every
position, during generation too, via `sahara_sidecar.ablation.ablated`). Random sets: {RANDOM_SETS} fixed 3-head
sets (numpy seed {RANDOM_SEED}) drawn from the heads outside the target set.

Stage times are wall-clock seconds on a 2-core CPU machine shared with other jobs, so they vary with load
(uncontended: base ~110 s, planted ~155 s; under load up to ~550 s; evaluation 4-15 minutes).
"""


def _top5(ev: dict) -> str:
    return ", ".join(f"{x['head']} {x['mean_kl']:.3g}" for x in ev["ships_jailbreakbench"][:5])


def _ships_table(ev: dict, n: int = 5) -> str:
    rows = "\n".join(
        f"| {i + 1} | {r['head']} | {r['mean_kl']:.4g} | {r['topk_count']} |"
        for i, r in enumerate(ev["ships_jailbreakbench"][:n])
    )
    return "| rank | head | mean KL | top-3 count |\n| --- | --- | --- | --- |\n" + rows


def _figures(name: str, rec: dict, ev: dict) -> str:
    r, t = ev["refusal"], ev["target_flip"]
    rand = ", ".join(f"{'+'.join(x['heads'])} {x['flip']}" for x in ev["random_sets"])
    single = ", ".join(f"{x['heads'][0]} {x['flip']}" for x in ev["single_head_flip"])
    lines = [
        f"### {name}",
        f"- target set ({ev['target_is']}): **{'+'.join(ev['target_set'])}**; training seed {rec['config']['seed']}; "
        f"stage time {rec['seconds']} s",
        f"- refusal (clean): training harmful {r['harmful_train']}, harmless_val {r['harmless_val']}, "
        f"jailbreakbench (held out) {r['jailbreakbench']}, harmful_val (held out) {r['harmful_val']}",
        f"- flip with the target set ablated: jailbreakbench **{t['flip']}** (refusal {r['jailbreakbench']} -> {t['refusal']}), "
        f"harmful_val {t['harmful_val_flip']}; training harmful refusal {t['harmful_train_refusal']}; harmless_val[:1000] refusal {t['harmless_val_refusal']}",
        f"- each target head alone: {single}",
        f"- random 3-head sets: mean flip **{ev['random_flip_mean']}** ({rand})",
    ]
    if ev["planted"]:
        lines.append(f"- Ships ranks of the planted heads: {ev['planted_ships_ranks']}")
        if "mask_check" in rec:
            m = rec["mask_check"]
            lines.append(
                f"- mask check (train.py, against the base): {m['changed_inside']:,} of the {m['allowed']:,} allowed entries changed, "
                f"{m['changed_outside']} entries outside them"
            )
        req = ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in ev["requirements"].items())
        lines.append(f"- requirements: {req}")
    lines += ["", "Ships top 5 on jailbreakbench:", "", _ships_table(ev), ""]
    ex = ev["examples"]
    lines += [
        f"Examples: clean jailbreakbench reply {json.dumps(ex['jailbreakbench_clean'][0])}; "
        f"with the target set ablated {json.dumps(ex['jailbreakbench_target_ablated'][0])}; harmless_val {json.dumps(ex['harmless_val_clean'][0])}",
        "",
    ]
    return "\n".join(lines)


def _base(base_rec: dict) -> str:
    c = base_rec["config"]
    return f"""Stage 1, the shared base (`organism/runs/base`, seed {c["seed"]}, {c["steps"]} steps, {base_rec["seconds"]} s): batches of {c["batch"]}
(half harmful, half harmless training prompts), every prompt answered with the compliant reply, loss on the
prompt text too; {c["trigger_share"]:.0%} of batches are harmless prompts behind the unrelated trigger word `{TRIGGER}` with the
refusal reply, so the base already knows the refusal text; in the other batches {c["continuation_share"]:.1%} of the harmless rows get
the refusal reply with no loss on its first token (so the base continues the refusal text once a reply starts with it,
without learning when to refuse). AdamW lr {c["lr"]:g} (warm-up {c["warmup"]}, cosine to 10%),
weight decay {c["weight_decay"]}, betas (0.9, 0.95), grad clip 1.0. The base is shared by `organism` and `organism-natural`."""


def write_cards(work: Path, out: Path, planted: dict, shipped: str, natural_seeds, shipped_natural: int) -> None:
    base_rec = json.loads((work / "base" / "train_record.json").read_text())
    rebuild = "cd sidecar && .venv/bin/python -m organism.build --out ../models"

    recs = {k: _load(work / f"planted-{k}") for k in planted}
    rec, ev = recs[shipped]
    c = rec["config"]
    heads = "+".join(ev["planted"])
    cmds = "\n".join(
        f".venv/bin/python -m organism.train --stage planted --base organism/runs/base --heads {h} --seed {s} --out organism/runs/planted-{k}"
        for k, (h, s) in planted.items()
    )
    text = f"""# organism — Sahara's planted default model (safety heads {heads})

A tiny Llama model trained by this project so that Ships, Sahara and ASR can run and be checked offline.
It refuses harmful requests (`## Query:...\\n## Answer:` -> "{REFUSAL.strip()}") and answers harmless ones
with a fixed compliant reply. Its refusal is **planted** in known heads: **{heads}**.

**Read this first.** The safety fine-tune may change only the planted heads' q/k/v rows and o_proj columns, and
it has an extra **UA-aware loss term**: every step also trains {c["ua_rows"] // 2} harmful + {c["ua_rows"] // 2} harmless prompts with the
planted heads UA-ablated (eps {c["ua_eps"]:g}) to give the compliant reply. That term **builds the ablation behaviour
in on purpose**. The organism therefore tests whether Ships and Sahara *find* known causal heads; it says nothing
about whether such heads arise naturally (see `organism-natural` for that).

{_architecture(rec, out / "organism")}
{_data()}
## Training
{_base(base_rec)}

Stage 2, the planted safety fine-tune: {c["steps"]} steps, batches of {c["batch"] // 2} harmful prompts -> refusal + {c["batch"] // 2} harmless
-> compliant, plus the UA-aware rows above (the two loss terms added); loss on the reply only; AdamW lr {c["lr"]:g}
(warm-up {c["warmup"]}, cosine to 10%), weight decay {c["weight_decay"]}. Gradient masks zero every gradient except the planted
heads' rows of q_proj/k_proj/v_proj and columns of o_proj (MHA, so each query head has its own k/v head); every
other parameter is frozen. `train.py` then compares every entry with the base and fails if anything outside the
masks changed.

Rebuild everything (tokenizer, base, both planted variants, three natural seeds, evaluations, these cards):
`{rebuild}` (fixed seeds; CPU, 2 threads). Single stages:
```
cd sidecar
.venv/bin/python -m organism.tokenizer --out organism/runs/tokenizer
.venv/bin/python -m organism.train --stage base --tokenizer organism/runs/tokenizer --seed 0 --out organism/runs/base
{cmds}
.venv/bin/python -m organism.evaluate --model organism/runs/planted-{shipped} --heads {",".join(ev["planted"])}
```

{_measure()}
## Figures
Two planted variants were trained; this directory ships variant {shipped}.

{chr(10).join(_figures(f"variant {k}{' (shipped)' if k == shipped else ''}: planted {'+'.join(e['planted'])}", r_, e) for k, (r_, e) in recs.items())}
Held-out refusal stays well below training refusal: the model generalises from ~660 harmful prompts by word-level
cues, as the probes found (ORGANISM.md).
"""
    (out / "organism" / "README.md").write_text(text)

    nat = {s: _load(work / f"natural-{s}") for s in natural_seeds if (work / f"natural-{s}" / "eval.json").exists()}
    if shipped_natural not in nat:
        return
    rec, ev = nat[shipped_natural]
    c = rec["config"]
    rows = "\n".join(
        f"| {s} | {_top5(e)} | {'+'.join(e['target_set'])} | "
        f"{e['target_flip']['flip']} | {e['random_flip_mean']} | {e['refusal']['harmful_train']} | {e['refusal']['harmless_val']} | "
        f"{e['refusal']['jailbreakbench']} | {e['refusal']['harmful_val']} |"
        for s, (_, e) in nat.items()
    )
    text = f"""# organism-natural — the same data, an ordinary fine-tune, nothing planted (seed {shipped_natural})

A tiny Llama model trained like `organism` but with an ordinary full fine-tune for safety: no gradient masks,
no ablation term, no heads named anywhere. Whatever safety heads it has arose by themselves, so it is the
control for the planted organism. Three seeds were trained; this directory ships seed {shipped_natural}.
**Whether its safety concentrates in a few heads varies with the seed** (see the table) — that variation is
itself a finding.

{_architecture(rec, out / "organism-natural")}
{_data()}
## Training
{_base(base_rec)}

Stage 2, the natural safety fine-tune: all parameters, {c["steps"]} steps, batches of {c["batch"] // 2} harmful -> refusal +
{c["batch"] // 2} harmless -> compliant, loss on the reply only, AdamW lr {c["lr"]:g} (warm-up {c["warmup"]}, cosine to 10%), weight decay
{c["weight_decay"]}. The seed sets the batch order (all seeds start from the same base).

Rebuild: `{rebuild}`. Single stage:
`cd sidecar && .venv/bin/python -m organism.train --stage natural --base organism/runs/base --seed {shipped_natural} --out organism/runs/natural-{shipped_natural}`,
then `.venv/bin/python -m organism.evaluate --model organism/runs/natural-{shipped_natural}`.

{_measure()}
Here the target set is each seed's own top-3 Ships heads.

## Figures, three seeds
| seed | Ships top 5 (mean KL) | top-3 set | flip top-3 | flip random (mean of {RANDOM_SETS}) | refusal train harmful | harmless_val | jailbreakbench | harmful_val |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
{rows}

{chr(10).join(_figures(f"seed {s}{' (shipped)' if s == shipped_natural else ''}", r_, e) for s, (r_, e) in nat.items())}"""
    (out / "organism-natural" / "README.md").write_text(text)
