"""Train the organism in stages: base | planted | natural.

- base: instruction following. Every prompt (half harmful, half harmless per batch) gets the
  compliant reply, loss on the prompt text too; 10% of batches are harmless prompts behind
  the trigger word with the refusal reply, so the base already knows the refusal text; and
  an eighth of the harmless rows of the other batches get the refusal reply with no loss on
  its first token, so the base continues the refusal text once a reply starts with it, without
  learning when to refuse.
- planted: safety fine-tune of a base in which gradient masks let only the named heads'
  q/k/v rows and o_proj columns change (verified afterwards). Balanced batches: harmful ->
  refusal, harmless -> compliant, loss on the reply only. Plus the UA-aware term: the same
  step also trains harmful and harmless prompts with the planted heads UA-ablated (eps 1e-5,
  sahara_sidecar.ablation) to the compliant reply. This builds the ablation behaviour in on
  purpose.
- natural: the same safety data as an ordinary full fine-tune of the base; nothing planted.

    python -m organism.train --stage base --tokenizer runs/tokenizer --out runs/base
    python -m organism.train --stage planted --base runs/base --heads L1H2,L2H0 --seed 0 --out runs/planted
    python -m organism.train --stage natural --base runs/base --seed 0 --out runs/natural-0
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from organism.data import COMPLIANT, REFUSAL, TRIGGER, render, splits
from organism.model import HEADS, HIDDEN, load_model, n_params, new_model, save
from organism.tokenizer import load as load_tokenizer
from sahara_sidecar.ablation import AblationSpec, ablated

MAX_PROMPT_TOKENS = 96


@dataclass
class TrainConfig:
    stage: str = "base"
    seed: int = 0
    steps: int = 200
    batch: int = 64  # half harmful, half harmless
    lr: float = 3e-3
    weight_decay: float = 0.1
    warmup: int = 20
    trigger_share: float = 0.1  # base only
    continuation_share: float = 0.125  # base only: harmless rows -> refusal, no loss on its first token
    heads: tuple[tuple[int, int], ...] = ()  # planted only
    ua_rows: int = 32  # planted only: half harmful, half harmless, heads UA-ablated
    ua_eps: float = 1e-5
    threads: int = 2
    log_every: int = 25
    extra: dict[str, str] = field(default_factory=dict)


DEFAULTS = {
    "base": TrainConfig(stage="base", steps=200, lr=3e-3, weight_decay=0.1),
    "planted": TrainConfig(stage="planted", steps=200, lr=5e-3, weight_decay=0.0, warmup=10),
    "natural": TrainConfig(stage="natural", steps=80, lr=2e-3, weight_decay=0.1, warmup=10),
}


def parse_heads(text: str) -> tuple[tuple[int, int], ...]:
    heads = []
    for name in text.split(","):
        layer, head = name.strip().upper().removeprefix("L").split("H")
        heads.append((int(layer), int(head)))
    return tuple(heads)


def head_name(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


class Encoded:
    """Token ids of prompts (BOS + template) and replies (+ EOS), tokenized once."""

    def __init__(self, tok: PreTrainedTokenizerFast) -> None:
        s = splits()
        self.tok = tok
        enc = lambda qs: [tok(render(q))["input_ids"] for q in qs]  # noqa: E731
        self.harmful = enc(s.harmful_train)
        self.harmless = [ids for ids in enc(s.harmless_train) if len(ids) <= MAX_PROMPT_TOKENS]
        self.harmless_trigger = [tok(render(f"{TRIGGER} {q}"))["input_ids"] for q in s.harmless_train[:4000]]
        self.harmless_trigger = [ids for ids in self.harmless_trigger if len(ids) <= MAX_PROMPT_TOKENS]
        eos = [tok.eos_token_id]
        self.refusal = tok(REFUSAL, add_special_tokens=False)["input_ids"] + eos
        self.compliant = tok(COMPLIANT, add_special_tokens=False)["input_ids"] + eos


PROMPT_TOO = -1  # loss on the prompt text as well as the reply


Row = tuple[list[int], list[int], int]  # prompt ids, reply ids, reply tokens without loss (or PROMPT_TOO)


def collate(rows: list[Row], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and next-token targets (-100 = no loss). Without an attention mask
    the causal model never lets a real token see the padding after it."""
    width = max(len(p) + len(r) for p, r, _ in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    targets = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (prompt, reply, skip) in enumerate(rows):
        seq = prompt + reply
        ids[i, : len(seq)] = torch.tensor(seq)
        start = 1 if skip == PROMPT_TOO else len(prompt) + skip  # target t-1 predicts seq[t]
        targets[i, start - 1 : len(seq) - 1] = torch.tensor(seq[start:])
    return ids, targets


def token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def head_masks(model: LlamaForCausalLM, heads: tuple[tuple[int, int], ...]) -> dict[str, torch.Tensor]:
    """Per-parameter 0/1 masks: the q/k/v rows and o_proj columns of each named head."""
    d = HIDDEN // HEADS
    masks: dict[str, torch.Tensor] = {}
    for layer, head in heads:
        rows = slice(head * d, (head + 1) * d)
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            name = f"model.layers.{layer}.self_attn.{proj}.weight"
            weight = dict(model.named_parameters())[name]
            mask = masks.setdefault(name, torch.zeros_like(weight))
            if proj == "o_proj":
                mask[:, rows] = 1.0
            else:
                mask[rows, :] = 1.0
    return masks


def verify_masked(base: LlamaForCausalLM, tuned: LlamaForCausalLM, masks: dict[str, torch.Tensor]) -> dict[str, int]:
    """Count changed entries inside and outside the allowed masks; outside must be zero."""
    before = base.state_dict()
    inside = outside = allowed = 0
    for name, after in tuned.state_dict().items():
        changed = after != before[name]
        mask = masks.get(name)
        if mask is None:
            outside += int(changed.sum())
        else:
            allowed += int(mask.sum())
            inside += int((changed & (mask > 0)).sum())
            outside += int((changed & (mask == 0)).sum())
    return {"changed_inside": inside, "allowed": allowed, "changed_outside": outside}


def sample(rng: np.random.Generator, pool: list[list[int]], n: int) -> list[list[int]]:
    return [pool[i] for i in rng.choice(len(pool), size=n, replace=False)]


def batch_rows(cfg: TrainConfig, data: Encoded, rng: np.random.Generator) -> list[Row]:
    half = cfg.batch // 2
    if cfg.stage == "base":
        if rng.random() < cfg.trigger_share:
            return [(p, data.refusal, PROMPT_TOO) for p in sample(rng, data.harmless_trigger, cfg.batch)]
        n_cont = int(half * cfg.continuation_share)
        rows = [(p, data.compliant, PROMPT_TOO) for p in sample(rng, data.harmful, half)]
        harmless = sample(rng, data.harmless, half)
        rows += [(p, data.refusal, 1) for p in harmless[:n_cont]]
        return rows + [(p, data.compliant, PROMPT_TOO) for p in harmless[n_cont:]]
    rows = [(p, data.refusal, 0) for p in sample(rng, data.harmful, half)]
    rows += [(p, data.compliant, 0) for p in sample(rng, data.harmless, half)]
    if cfg.stage == "planted" and cfg.ua_rows:
        ua = sample(rng, data.harmful, cfg.ua_rows // 2) + sample(rng, data.harmless, cfg.ua_rows // 2)
        rows += [(p, data.compliant, 0) for p in ua]
    return rows


def train(cfg: TrainConfig, tokenizer_dir: Path, base_dir: Path | None, out: Path) -> dict:
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    tok = load_tokenizer(tokenizer_dir)
    data = Encoded(tok)
    if cfg.stage == "base":
        model = new_model(tok, cfg.seed)
        base = None
    else:
        assert base_dir is not None, "--base is required for this stage"
        model = load_model(base_dir)
        base = load_model(base_dir)
    model.train()
    masks = head_masks(model, cfg.heads) if cfg.stage == "planted" else {}
    if cfg.stage == "planted":
        for name, p in model.named_parameters():
            p.requires_grad_(name in masks)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    named = dict(model.named_parameters())
    spec = AblationSpec(heads=cfg.heads, method="ua", eps=cfg.ua_eps)
    start, history = time.time(), []
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        rows = batch_rows(cfg, data, rng)
        ids, targets = collate(rows, tok.pad_token_id)
        n_ua = cfg.ua_rows if cfg.stage == "planted" else 0
        if n_ua:
            with ablated(model, [None] * (len(rows) - n_ua) + [spec] * n_ua):
                logits = model(input_ids=ids).logits
            main = token_loss(logits[:-n_ua], targets[:-n_ua])
            ua = token_loss(logits[-n_ua:], targets[-n_ua:])
            loss = main + ua
        else:
            logits = model(input_ids=ids).logits
            main = loss = token_loss(logits, targets)
            ua = torch.zeros(())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for name, mask in masks.items():
            named[name].grad.mul_(mask)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            m, u = main.item(), ua.item()
            history.append({"step": step, "loss": round(m, 5), "ua_loss": round(u, 5)})
            print(
                f"{cfg.stage} step {step:4d} loss {m:.4f} ua {u:.4f} {time.time() - start:6.1f}s",
                flush=True,
            )
    seconds = time.time() - start
    model.eval()
    record: dict = {"config": asdict(cfg), "seconds": round(seconds, 1), "history": history, "params": n_params(model)}
    record["config"]["heads"] = [head_name(*h) for h in cfg.heads]
    record["data"] = {"harmful_train": len(data.harmful), "harmless_train_used": len(data.harmless)}
    if base is not None and cfg.stage == "planted":
        check = verify_masked(base, model, masks)
        assert check["changed_outside"] == 0, f"entries outside the planted heads changed: {check}"
        record["mask_check"] = check
        print(f"mask check: {check}")
    save(model, tok, out)
    (out / "train_record.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", choices=sorted(DEFAULTS), required=True)
    ap.add_argument("--tokenizer", type=Path, help="tokenizer dir (default: the base's)")
    ap.add_argument("--base", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--heads", default="", help="planted heads, e.g. L1H2,L2H0")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--ua-rows", type=int)
    args = ap.parse_args()
    cfg = TrainConfig(**asdict(DEFAULTS[args.stage]))
    cfg.seed = args.seed
    cfg.heads = parse_heads(args.heads) if args.heads else ()
    if args.steps is not None:
        cfg.steps = args.steps
    if args.lr is not None:
        cfg.lr = args.lr
    if args.ua_rows is not None:
        cfg.ua_rows = args.ua_rows
    if cfg.stage == "planted" and not cfg.heads:
        ap.error("--heads is required for --stage planted")
    tokenizer_dir = args.tokenizer or args.base
    if tokenizer_dir is None:
        ap.error("--tokenizer is required for --stage base")
    train(cfg, tokenizer_dir, args.base, args.out)


if __name__ == "__main__":
    main()
