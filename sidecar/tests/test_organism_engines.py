"""On the organism (models/organism, planted safety heads L1H2 and L2H0): the fast and naive engines
give the same Ships scan and the same Sahara steps, and attribution finds the planted head."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from sahara_sidecar import loading
from sahara_sidecar.ablation import AblationSpec
from sahara_sidecar.attribution import attribute
from sahara_sidecar.engines import run_forward
from sahara_sidecar.prompts import encode
from sahara_sidecar.stats import ForwardStats

ROOT = Path(__file__).resolve().parents[2]
ORGANISM = ROOT / "models" / "organism"
DATA = Path(os.environ.get("SAHARA_DATA_DIR", ROOT.parent / "shared" / "data"))
PROMPTS = 24  # the first jailbreakbench queries (held out from the organism's training)
EPS = 1e-5

pytestmark = pytest.mark.skipif(
    not (ORGANISM / "model.safetensors").exists() or not (DATA / "jailbreakbench.json").exists(),
    reason="needs models/organism and the shared data folder",
)


@pytest.fixture(scope="module")
def organism():
    return loading.load(str(ORGANISM), device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def ids(organism):
    queries = [row["instruction"] for row in json.loads((DATA / "jailbreakbench.json").read_text())[:PROMPTS]]
    return encode(queries, "paper", organism.tokenizer)


def name(index: int, heads: int = 4) -> str:
    return f"L{index // heads}H{index % heads}"


def ships(lm, ids, engine: str, method: str = "ua") -> tuple[torch.Tensor, torch.Tensor, ForwardStats]:
    """Mean KL(clean || ablated) per head [L*H] in float64, the rows' KL [N, L*H], and the stats."""
    geo = lm.geometry
    specs = [AblationSpec()] + [
        AblationSpec(((layer, head),), method, EPS) for layer in range(geo.num_layers) for head in range(geo.num_heads)
    ]
    stats = ForwardStats()
    batches = run_forward(lm, ids, specs, engine=engine, want_logprobs=True, want_hidden=False, stats=stats)
    logprobs = torch.cat([b.logprobs for b in batches]).view(len(ids), len(specs), -1)
    probs = logprobs.double().exp() + 1e-12
    kl = (probs[:, :1] * (probs[:, :1].log() - probs.log())).sum(-1)[:, 1:]
    return kl.mean(0), kl, stats


def test_ships_scan_fast_equals_naive(organism, ids):
    fast_mean, fast_kl, fast_stats = ships(organism, ids, "fast")
    naive_mean, naive_kl, naive_stats = ships(organism, ids, "naive")
    torch.testing.assert_close(fast_kl, naive_kl, rtol=1e-4, atol=1e-5)
    resolved = naive_mean > 1e-3  # below that, float32 log-prob rounding (~1e-6) limits the relative precision
    assert resolved.sum() >= 8
    assert ((fast_mean - naive_mean).abs() / naive_mean)[resolved].max() <= 1e-4
    fast_top = fast_mean.argsort(descending=True)[:10].tolist()
    assert fast_top == naive_mean.argsort(descending=True)[:10].tolist()
    assert [name(i) for i in fast_top[:2]] == ["L1H2", "L2H0"], "the planted heads lead the scan"
    assert fast_stats.forwards < naive_stats.forwards == PROMPTS * 17
    assert fast_stats.flops < naive_stats.flops


def principal_angle(base: torch.Tensor, ablated: torch.Tensor) -> float:
    """Dataset Ships with r_main = 1, no centring (METHOD.md): the angle between first left singular vectors."""
    u_base = torch.linalg.svd(base.double(), full_matrices=False).U[:, :1]
    u_abl = torch.linalg.svd(ablated.double(), full_matrices=False).U[:, :1]
    cosine = torch.linalg.svdvals(u_base.T @ u_abl)[0].clamp(0, 1)
    return float(torch.rad2deg(torch.arccos(cosine)))


def sahara_steps(lm, ids, engine: str, steps: int = 2) -> list[tuple[int, int]]:
    geo = lm.geometry
    heads = [(layer, head) for layer in range(geo.num_layers) for head in range(geo.num_heads)]
    group: list[tuple[int, int]] = []
    base = None
    for _ in range(steps):
        candidates = [h for h in heads if h not in group]
        specs = [AblationSpec()] + [AblationSpec((*group, h), "ua", EPS) for h in candidates]
        batches = run_forward(lm, ids, specs, engine=engine, want_logprobs=False, want_hidden=True)
        hidden = torch.cat([b.hidden for b in batches]).view(len(ids), len(specs), -1)
        base = hidden[:, 0] if base is None else base
        scores = [principal_angle(base, hidden[:, 1 + i]) for i in range(len(candidates))]
        group.append(candidates[max(range(len(scores)), key=scores.__getitem__)])
    return group


def test_sahara_steps_fast_equal_naive(organism, ids):
    fast_group = sahara_steps(organism, ids[:12], "fast")
    assert fast_group == sahara_steps(organism, ids[:12], "naive")


@pytest.mark.parametrize("method", ["ua", "sc"])
def test_attribution_finds_the_planted_head(organism, ids, method):
    exact_mean, _, _ = ships(organism, ids, "fast", method)
    attribution = torch.cat([b.attribution for b in attribute(organism, ids, method=method, eps=EPS)])
    assert attribution.shape == (PROMPTS, 4, 4)
    estimated = attribution.double().mean(0).flatten()
    exact_top = exact_mean.argsort(descending=True)[:10].tolist()
    estimated_top = estimated.argsort(descending=True)[:10].tolist()
    assert exact_top[0] == 1 * 4 + 2, "L1H2 leads the exact scan"
    assert 1 * 4 + 2 in estimated_top[:3], f"L1H2 in attribution's top 3: {[name(i) for i in estimated_top]}"
    recall = len(set(exact_top) & set(estimated_top)) / 10
    assert recall >= 0.8, f"recall of the exact top-10: {recall}"  # measured 1.0 on 24 and on 100 prompts
