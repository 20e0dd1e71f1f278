"""Batch sizes from a memory budget, and batches split in half when the device runs out of memory.

The budget is the activation memory one forward may use, on top of the weights:
- asked for (memory_budget_gib > 0): that many GiB;
- auto on CUDA: CUDA_FREE_FRACTION of the free device memory (torch.cuda.mem_get_info);
- auto on CPU: CPU_DEFAULT_BUDGET_GIB.
Rows per forward = budget // activation_bytes_per_row, capped by the request's max_batch_rows
(if > 0) and MAX_AUTO_ROWS. When a forward still runs out of memory, `run_in_batches` halves the
batch and retries (counting oom_splits); a single row that does not fit raises ResourceExhausted.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import torch

from .stats import ForwardStats, ModelCost

GIB = 1 << 30
CPU_DEFAULT_BUDGET_GIB = 2.0
CUDA_FREE_FRACTION = 0.7
MAX_BUDGET_GIB = float(1 << 20)  # 1 PiB: above any device; also keeps the byte count a finite int
MAX_AUTO_ROWS = 1024  # larger batches gain nothing measurable and delay the first streamed result
SAFETY_FACTOR = 2.0  # allocator fragmentation, kernel workspaces, temporaries the formula misses

T = TypeVar("T")
R = TypeVar("R")


class ResourceExhausted(RuntimeError):
    """Even one row does not fit in the device's memory; becomes RESOURCE_EXHAUSTED."""


def budget_in_range(memory_budget_gib: float) -> bool:
    """0 (auto) to MAX_BUDGET_GIB; NaN and infinities are outside."""
    return 0 <= memory_budget_gib <= MAX_BUDGET_GIB


def budget_bytes(memory_budget_gib: float, device: torch.device) -> int:
    """The activation budget in bytes (see the module docstring for the auto rule)."""
    if memory_budget_gib > 0:
        return int(memory_budget_gib * GIB)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * CUDA_FREE_FRACTION)
    return int(CPU_DEFAULT_BUDGET_GIB * GIB)


def activation_bytes_per_row(
    cost: ModelCost, tokens: int, *, kept_positions: int = 1, layers_kept: int = 1, with_grad: bool = False
) -> int:
    """Estimated peak activation bytes of one row (one sequence of `tokens` positions) in a forward.

    In inference mode a decoder layer's temporaries are freed before the next layer runs, so the
    peak is one layer's worth (layers_kept = 1); a forward kept for a backward pass holds every
    layer's (layers_kept = L, with_grad doubles it for the gradients). With T = tokens, d = hidden
    size, H/K = query/key-value heads, d_h = head size, I = intermediate size, b = dtype bytes:

        layer = b * T * (5 d                 residual in and out, norm output, attention output, o_proj output
                         + 2 (H + 2K) d_h    q, k, v and their RoPE'd copies
                         + 3 I)              MLP gate, up, activation x up
              + 2 * b * H * T^2              attention scores and probabilities (the math kernel
                                             materialises them, fused kernels do not)
        logits = kept_positions * V * (b + 8) lm_head output, its float32 copy and log_softmax

        bytes_per_row = SAFETY_FACTOR * (layers_kept * layer * (2 if with_grad else 1) + logits)
    """
    b = cost.dtype_bytes
    d, dh, heads, kv = cost.hidden_size, cost.head_dim, cost.num_heads, cost.num_kv_heads
    per_layer = b * tokens * (5 * d + 2 * (heads + 2 * kv) * dh + 3 * cost.intermediate_size)
    per_layer += 2 * b * heads * tokens * tokens
    logits = kept_positions * cost.vocab_size * (b + 8)
    total = layers_kept * per_layer * (2 if with_grad else 1) + logits
    return int(SAFETY_FACTOR * total)


def plan_batch_rows(budget: int, bytes_per_row: int, cap: int = 0) -> int:
    """Rows per forward: as many as the budget holds, at least 1, at most `cap` (if > 0) and MAX_AUTO_ROWS."""
    rows = max(1, budget // max(1, bytes_per_row))
    rows = min(rows, MAX_AUTO_ROWS)
    if cap > 0:
        rows = min(rows, cap)
    return rows


def is_out_of_memory(err: BaseException) -> bool:
    if isinstance(err, torch.OutOfMemoryError):
        return True
    # The CPU allocator raises a plain RuntimeError.
    return isinstance(err, RuntimeError) and "can't allocate memory" in str(err)


def release_cached_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_in_batches(
    items: Sequence[T],
    batch_rows: int,
    run: Callable[[Sequence[T]], R],
    stats: ForwardStats,
    device: torch.device,
    on_split: Callable[[int], None] | None = None,
) -> Iterator[tuple[Sequence[T], R]]:
    """(batch, run(batch)) for consecutive batches of `items`, in order.

    A batch that runs out of memory is halved and retried, and later batches keep the smaller
    size (also reported to `on_split`); every halving adds one to stats.oom_splits. One item that does not fit raises
    ResourceExhausted. The caller's work between batches (after the yield) is never retried.
    """
    size = max(1, batch_rows)
    start = 0
    while start < len(items):
        chunk = items[start : start + size]
        failure: BaseException | None = None
        try:
            result = run(chunk)
        except (torch.OutOfMemoryError, RuntimeError) as err:
            if not is_out_of_memory(err):
                raise
            failure = err
        if failure is not None:
            failure = None  # drop the traceback (and the tensors its frames hold) before retrying
            release_cached_memory(device)
            if len(chunk) == 1:
                raise ResourceExhausted(
                    "out of memory with a single row; use a smaller model, shorter prompts or a device with more memory"
                )
            size = max(1, len(chunk) // 2)
            stats.oom_splits += 1
            if on_split is not None:
                on_split(size)
            continue
        yield chunk, result
        start += len(chunk)
