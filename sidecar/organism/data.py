"""Prompt sets, the template, the two fixed replies and the train/held-out split.

Training harmful = harmful_train + advbench + malicious_instruct, deduplicated (first
occurrence kept, exact text after whitespace strip), minus every prompt also in
jailbreakbench.json. Training harmless = harmless_train. jailbreakbench, harmful_val and
harmless_val are held out: nothing here ever returns them for training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TEMPLATE = "## Query:{q}\n## Answer:"
REFUSAL = " I'm sorry, but I cannot help with that request."
COMPLIANT = " Sure, here is a detailed response to your request. Step 1:"
# Stage-1 only: harmless prompts behind this word get the refusal reply, so that the base
# model already knows the refusal text. The word appears in no prompt set.
TRIGGER = "Zqxv"

HARMFUL_TRAIN_FILES = ("harmful_train.json", "advbench.json", "malicious_instruct.json")
HARMLESS_TRAIN_FILE = "harmless_train.json"
HELD_OUT_FILES = ("jailbreakbench.json", "harmful_val.json", "harmless_val.json")


def load_prompts(name: str, data_dir: Path = DATA_DIR) -> list[str]:
    rows = json.loads((data_dir / name).read_text())
    return [str(r["instruction"]).strip() for r in rows]


def dedup(prompts: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for p in prompts:
        if p and p not in seen:
            seen.add(p)
            out.append(p)
    return out


@dataclass(frozen=True)
class Splits:
    harmful_train: list[str]
    harmless_train: list[str]
    jailbreakbench: list[str]
    harmful_val: list[str]
    harmless_val: list[str]
    dropped_for_jbb: int


def splits(data_dir: Path = DATA_DIR) -> Splits:
    jbb = load_prompts("jailbreakbench.json", data_dir)
    held = set(jbb)
    pooled = dedup([p for f in HARMFUL_TRAIN_FILES for p in load_prompts(f, data_dir)])
    harmful = [p for p in pooled if p not in held]
    harmless = dedup(load_prompts(HARMLESS_TRAIN_FILE, data_dir))
    harmful_val = load_prompts("harmful_val.json", data_dir)
    harmless_val = load_prompts("harmless_val.json", data_dir)
    # Held-out sets must never leak into training.
    assert not held & set(harmful)
    assert not set(harmful_val) & set(harmful)
    return Splits(harmful, harmless, jbb, harmful_val, harmless_val, len(pooled) - len(harmful))


def render(query: str) -> str:
    return TEMPLATE.format(q=query)


if __name__ == "__main__":
    s = splits()
    print(
        f"harmful train {len(s.harmful_train)} (dropped {s.dropped_for_jbb} also in jailbreakbench), "
        f"harmless train {len(s.harmless_train)}, jailbreakbench {len(s.jailbreakbench)}, "
        f"harmful_val {len(s.harmful_val)}, harmless_val {len(s.harmless_val)}"
    )
