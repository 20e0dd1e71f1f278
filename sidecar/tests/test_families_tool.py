"""tools/families.py, the family table: served families pass both checks, an unserved one says why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "families.py"


def test_family_table_rows():
    out = subprocess.run(
        [sys.executable, str(TOOL), "gemma3_text", "granite", "gpt2"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    gemma = rows["gemma3_text"].split("|")
    assert (
        gemma[2].strip().startswith("yes (") and gemma[3].strip().startswith("yes (") and gemma[4].strip() == "resumed"
    )
    assert float(gemma[5]) < 1e-4, "fast and naive engines agree"
    assert float(rows["granite"].split("|")[5]) < 1e-4, "also where the head divides by logits_scaling (set to 8)"
    assert "not served: LoadError: model type 'gpt2' is not supported" in rows["gpt2"]
