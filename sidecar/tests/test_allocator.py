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
def churn(rounds):
    for i in range(rounds):
        a = torch.ones(((i % 16) + 1) << 17)
        b = a * 2
        del a, b
churn(64)  # the heap grows to its working size once, with either setting
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
churn(400)
print(json.dumps({{"tuned": tuned, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}}))
"""


def churn(tune: bool) -> dict[str, object]:
    from conftest import SIDECAR

    code = CHURN.format(sidecar=str(SIDECAR), tune=tune)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(glibc() is None, reason="mallopt is glibc's; other C libraries are left alone")
def test_freed_memory_is_reused_without_page_faults() -> None:
    """400 rounds touch ~850k pages of new tensors. With the settings, after the heap has grown
    once, they are reused pages (0 faults standalone, 2.7k once in a full test run: a late heap
    growth). glibc's defaults adapt their mmap threshold as blocks are freed, so they fault either
    ~100k times here or not at all (both seen, in about equal measure), which is why only the tuned
    process is asserted on, at a tenth of the defaults' faulting level."""
    tuned = churn(True)
    assert tuned["tuned"] is True, "every mallopt setting was accepted"
    assert tuned["faults"] < 10_000, f"freed memory was handed back and faulted in again: {tuned}"


def test_serve_reuses_memory_unless_told_otherwise() -> None:
    assert cli.parse_args(["serve", "--model", "m"]).malloc == "reuse"
    assert cli.parse_args(["serve", "--model", "m", "--malloc", "default"]).malloc == "default"
    with pytest.raises(SystemExit):
        cli.parse_args(["serve", "--model", "m", "--malloc", "jemalloc"])
