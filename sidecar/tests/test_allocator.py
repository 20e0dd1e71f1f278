"""allocator.keep_freed_memory: freed tensor memory is reused, not handed back and faulted in again.

Each case runs in its own Python process: malloc settings are process-wide and cannot be undone.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sahara_sidecar import __main__ as cli
from sahara_sidecar.allocator import glibc

# Allocate, touch and free tensors of the sizes a batched forward makes (0.5-8 MiB), as a forward
# does, and count the minor page faults (pages the kernel had to hand out and zero).
CHURN = """
import json, resource, sys
sys.path.insert(0, {sidecar!r})
from sahara_sidecar.allocator import keep_freed_memory
tuned = keep_freed_memory() if {tune} else False
import torch
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(400):
    a = torch.ones(((i % 16) + 1) << 17)
    b = a * 2
    del a, b
print(json.dumps({{"tuned": tuned, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}}))
"""


def churn(tune: bool) -> dict[str, object]:
    from conftest import SIDECAR

    code = CHURN.format(sidecar=str(SIDECAR), tune=tune)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(glibc() is None, reason="mallopt is glibc's; other C libraries are left alone")
def test_reused_memory_takes_a_fraction_of_the_page_faults() -> None:
    default, tuned = churn(False), churn(True)
    assert tuned["tuned"] is True, "every mallopt setting was accepted"
    assert default["faults"] > 20_000, f"the default settings fault fresh pages in: {default}"
    assert tuned["faults"] * 5 < default["faults"], f"tuned {tuned} vs default {default}"


def test_serve_reuses_memory_unless_told_otherwise() -> None:
    assert cli.parse_args(["serve", "--model", "m"]).malloc == "reuse"
    assert cli.parse_args(["serve", "--model", "m", "--malloc", "default"]).malloc == "default"
    with pytest.raises(SystemExit):
        cli.parse_args(["serve", "--model", "m", "--malloc", "jemalloc"])
