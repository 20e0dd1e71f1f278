"""bench/gpu_check.py --smoke: the GPU check runs rarely (only on a lent GPU host, minutes of device
time), so its every section is run here on the CPU with small shapes, and must report figures,
not errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_check.py"
DATA = Path(os.environ.get("SAHARA_DATA_DIR", ROOT.parent / "shared" / "data"))


@pytest.mark.skipif(not (DATA / "jailbreakbench.json").exists(), reason="needs the shared data folder")
def test_gpu_check_smoke_reports_every_section(tmp_path):
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--data", str(DATA)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, "OUT": str(tmp_path)},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((tmp_path / "gpu_check.json").read_text())
    errors = {section: figures["error"] for section, figures in results.items() if "error" in figures}
    assert errors == {}
    assert {
        "env",
        "matmul",
        "organism",
        "llama7b",
        "llama7b_load_checks",
        "llama7b_fast",
        "llama7b_naive",
        "grpc",
    } <= set(results)
    organism = results["organism"]
    assert organism["top5_cpu_fp32"] == organism["top5_gpu_bf16_fast"]  # both float32 on the CPU here
    # float32 both: only batch-shape rounding, which is relatively large on heads whose mean KL is
    # near zero (measured 0.003-0.005, as the bench's mean_kl_rel_diff_max)
    assert organism["max_rel_diff_mean_kl"] < 0.02 and organism["max_rel_diff_mean_kl_fast"] < 0.02
    fast = results["llama7b_fast"]
    assert fast["head_prompts_per_s"] > 0 and 0 < fast["fraction_of_peak"] < 2
    assert results["llama7b_naive"]["fast_over_naive"] > 0
    assert results["grpc"]["forward_messages"] >= 3 and results["grpc"]["reply"]
