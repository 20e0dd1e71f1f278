"""Shared test setup: importable stubs and sidecar package, offline HF, tiny models on disk."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SIDECAR = Path(__file__).resolve().parents[1]
TESTS = SIDECAR / "tests"
for path in (SIDECAR, TESTS):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

if not (SIDECAR / "sahara_sidecar" / "_gen" / "sahara" / "v1" / "sahara_pb2.py").exists():
    subprocess.run(["bash", str(SIDECAR / "gen_protos.sh")], check=True, env={**os.environ, "PYTHON": sys.executable})

import tiny_models  # noqa: E402
import torch  # noqa: E402

from sahara_sidecar import loading  # noqa: E402

torch.set_num_threads(1)  # tiny models: threads only contend with each other


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """family -> a saved tiny model directory. Only llama's tokenizer has a chat template."""
    root = tmp_path_factory.mktemp("models")
    return {
        family: tiny_models.save(
            family, root / family, chat_template=tiny_models.CHAT_TEMPLATE if family == "llama" else None
        )
        for family in (*tiny_models.FAMILIES, *tiny_models.EXTRA_FAMILIES)
    }


@pytest.fixture(scope="session")
def tiny_lms(tiny_dirs: dict[str, Path]) -> dict[str, loading.LoadedModel]:
    """family -> the tiny model loaded the way the server loads it (fp32, cpu, default attention)."""
    return {family: loading.load(str(path), device="cpu", dtype="float32") for family, path in tiny_dirs.items()}


@pytest.fixture(scope="session")
def eager_lms(tiny_dirs: dict[str, Path]) -> dict[str, loading.LoadedModel]:
    """family -> the tiny model with eager attention, which can return attention patterns."""
    from transformers import AutoConfig, AutoTokenizer

    lms = {}
    for family, path in tiny_dirs.items():
        auto_class = loading.model_class(AutoConfig.from_pretrained(path))
        model = auto_class.from_pretrained(path, attn_implementation="eager", dtype=torch.float32).eval()
        lms[family] = loading.wrap(str(path), model, AutoTokenizer.from_pretrained(path))
    return lms
