"""The memory planner and the out-of-memory split."""

from __future__ import annotations

import pytest
import torch

from sahara_sidecar import memory
from sahara_sidecar.memory import (
    ResourceExhausted,
    activation_bytes_per_row,
    budget_bytes,
    plan_batch_rows,
    run_in_batches,
)
from sahara_sidecar.stats import ForwardStats, model_cost


def test_budget():
    cpu = torch.device("cpu")
    assert budget_bytes(1.5, cpu) == int(1.5 * (1 << 30))
    assert budget_bytes(0, cpu) == int(memory.CPU_DEFAULT_BUDGET_GIB * (1 << 30))


def test_bytes_per_row_formula(tiny_lms):
    cost = model_cost(tiny_lms["llama"])  # d 64, 4 heads of 16 (4 kv), I 128, V 300, float32
    b, d, t = 4, 64, 10
    layer = b * t * (5 * d + 2 * (4 + 8) * 16 + 3 * 128) + 2 * b * 4 * t * t
    logits = 300 * (b + 8)
    assert activation_bytes_per_row(cost, t) == int(memory.SAFETY_FACTOR * (layer + logits))
    assert activation_bytes_per_row(cost, 2 * t) > 2 * activation_bytes_per_row(cost, t) - logits
    grad = activation_bytes_per_row(cost, t, layers_kept=3, with_grad=True)
    assert grad == int(memory.SAFETY_FACTOR * (3 * layer * 2 + logits))


def test_plan_batch_rows():
    assert plan_batch_rows(1000, 10) == 100
    assert plan_batch_rows(1000, 10, cap=7) == 7
    assert plan_batch_rows(5, 10) == 1, "at least one row"
    assert plan_batch_rows(1 << 40, 1) == memory.MAX_AUTO_ROWS


def oom_above(k: int, calls: list[int]):
    def run(batch):
        calls.append(len(batch))
        if len(batch) > k:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return [x * 10 for x in batch]

    return run


def test_split_on_out_of_memory():
    stats, calls, shrunk = ForwardStats(), [], []
    items = list(range(23))
    out = list(run_in_batches(items, 16, oom_above(5, calls), stats, torch.device("cpu"), on_split=shrunk.append))
    assert [x for batch, _ in out for x in batch] == items, "every item once, in order"
    assert all(result == [x * 10 for x in batch] for batch, result in out)
    assert calls[:3] == [16, 8, 4], "halved until it fits"
    assert all(size <= 4 for size in calls[3:]), "later batches keep the size that worked"
    assert stats.oom_splits == 2 and shrunk == [8, 4]


def test_cpu_allocator_failure_is_out_of_memory():
    stats = ForwardStats()

    def run(batch):
        if len(batch) > 2:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
        return len(batch)

    out = list(run_in_batches(list(range(8)), 8, run, stats, torch.device("cpu")))
    assert sum(len(batch) for batch, _ in out) == 8 and stats.oom_splits == 2


def test_one_row_that_does_not_fit_and_other_errors():
    with pytest.raises(ResourceExhausted, match="single row"):
        list(run_in_batches([1, 2, 3], 4, oom_above(0, []), ForwardStats(), torch.device("cpu")))

    def broken(_batch):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        list(run_in_batches([1, 2], 2, broken, ForwardStats(), torch.device("cpu")))
