"""Rebuild every organism from scratch, deterministically, and write the shipped model dirs.

    cd sidecar && .venv/bin/python -m organism.build --out ../models

Steps (intermediates in organism/runs/, git-ignored): tokenizer -> shared base -> two planted
variants -> three natural seeds -> evaluation of each -> models/organism (planted variant A)
and models/organism-natural (seed 0), each with a model card reporting all variants/seeds.
--reuse skips a step whose output already exists.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from organism import card
from organism.evaluate import evaluate, summary
from organism.tokenizer import train_tokenizer
from organism.train import DEFAULTS, TrainConfig, parse_heads, train

PLANTED = {"a": ("L1H2,L2H0", 0), "b": ("L1H0,L2H3", 1)}
SHIPPED_PLANTED = "a"
NATURAL_SEEDS = (0, 1, 2)
SHIPPED_NATURAL = 0
MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def config(stage: str, seed: int, heads: str = "") -> TrainConfig:
    cfg = TrainConfig(**asdict(DEFAULTS[stage]))
    cfg.seed, cfg.heads = seed, parse_heads(heads) if heads else ()
    return cfg


def step(name: str, done: Path, reuse: bool, fn) -> None:
    if reuse and done.exists():
        print(f"== {name}: reusing {done.parent}", flush=True)
        return
    print(f"== {name}", flush=True)
    t = time.time()
    fn()
    print(f"== {name} done in {time.time() - t:.0f} s", flush=True)


def run_eval(model: Path, heads: str) -> None:
    res = evaluate(model, parse_heads(heads) if heads else ())
    print(summary(res), flush=True)
    (model / "eval.json").write_text(json.dumps(res, indent=2) + "\n")


def ship(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for f in (*MODEL_FILES, "train_record.json"):
        shutil.copy2(src / f, dst / f)
    ev = json.loads((src / "eval.json").read_text())
    ev["model"] = f"organism/runs/{src.name}"  # where it was evaluated, relative to sidecar/
    (dst / "eval.json").write_text(json.dumps(ev, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("../models"))
    ap.add_argument("--work", type=Path, default=Path(__file__).parent / "runs")
    ap.add_argument("--reuse", action="store_true")
    args = ap.parse_args()
    w = args.work
    step("tokenizer", w / "tokenizer" / "tokenizer.json", args.reuse, lambda: train_tokenizer(w / "tokenizer"))
    step(
        "base",
        w / "base" / "train_record.json",
        args.reuse,
        lambda: train(config("base", 0), w / "tokenizer", None, w / "base"),
    )
    for key, (heads, seed) in PLANTED.items():
        d = w / f"planted-{key}"
        cfg = config("planted", seed, heads)
        step(f"planted {key} {heads} seed {seed}", d / "train_record.json", args.reuse,
             lambda d=d, cfg=cfg: train(cfg, w / "base", w / "base", d))  # fmt: skip
        step(f"evaluate planted {key}", d / "eval.json", args.reuse, lambda d=d, heads=heads: run_eval(d, heads))
    for seed in NATURAL_SEEDS:
        d = w / f"natural-{seed}"
        step(f"natural seed {seed}", d / "train_record.json", args.reuse,
             lambda d=d, seed=seed: train(config("natural", seed), w / "base", w / "base", d))  # fmt: skip
        step(f"evaluate natural {seed}", d / "eval.json", args.reuse, lambda d=d: run_eval(d, ""))
    ship(w / f"planted-{SHIPPED_PLANTED}", args.out / "organism")
    if (w / f"natural-{SHIPPED_NATURAL}" / "eval.json").exists():
        ship(w / f"natural-{SHIPPED_NATURAL}", args.out / "organism-natural")
    card.write_cards(w, args.out, PLANTED, SHIPPED_PLANTED, NATURAL_SEEDS, SHIPPED_NATURAL)
    print(f"wrote {args.out / 'organism'} and {args.out / 'organism-natural'}")


if __name__ == "__main__":
    main()
