"""The batched, ablated forward pass: N prompts x M specs -> last-position log-probs and hidden states.

Rows are (prompt, spec) pairs in prompt-major order: row r = n*M + m is prompt n under spec m.
Rows are cut into batches of at most `max_batch_rows`; each batch is one forward of the
model with every row ablated by its own spec (ablation.ablated), left padded, keeping only
the last position's logits. Results come back batch by batch, in row order, so a caller can
stream them while the next batch runs.

This is the full-forward path: every row runs every layer. The fast engine (fast.py) adds
clean-pass reuse on top of it and falls back to it where reuse is impossible; the naive engine
(naive.py) is the authors' one-forward-per-row baseline.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from .ablation import AblationSpec, ablated
from .loading import LoadedModel
from .prompts import Batch, left_pad
from .stats import ForwardStats, model_cost


@dataclass
class BatchResult:
    rows: range  # the row indices (n*M + m) this batch covers
    logprobs: torch.Tensor | None  # [len(rows), vocab] float32, on the CPU
    hidden: torch.Tensor | None  # [len(rows), hidden_size] float32, on the CPU


def row_batches(num_rows: int, max_batch_rows: int) -> Iterator[range]:
    """Consecutive row ranges, one per forward.

    Fixed-size batches; memory.plan_batch_rows sizes them from a budget and memory.run_in_batches
    splits one again after an out-of-memory error (used by the fast engine).
    """
    step = max(1, max_batch_rows)
    for start in range(0, num_rows, step):
        yield range(start, min(start + step, num_rows))


@contextmanager
def capture_last_token(module: nn.Module, enabled: bool) -> Iterator[dict[str, torch.Tensor]]:
    """Record the module's output at the last position (the final norm's: the input of lm_head)."""
    captured: dict[str, torch.Tensor] = {}
    if not enabled:
        yield captured
        return

    def hook(_module: nn.Module, _args: object, output: torch.Tensor) -> None:
        captured["last"] = output[:, -1, :]

    handle = module.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def last_position_logits(lm: LoadedModel, batch: Batch) -> torch.Tensor:
    """One forward of a left-padded batch, only the last position through lm_head: logits [rows, vocab]."""
    out = lm.model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        logits_to_keep=1,
        use_cache=False,
    )
    return out.logits[:, -1, :]


def forward_batch(
    lm: LoadedModel,
    ids: Sequence[Sequence[int]],
    specs: Sequence[AblationSpec | None],
    *,
    want_logprobs: bool,
    want_hidden: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """One forward: row i is the prompt ids[i] with specs[i] ablated."""
    batch = left_pad(ids, lm.pad_token_id, lm.device)
    with (
        torch.inference_mode(),
        ablated(lm.model, specs),
        capture_last_token(lm.final_norm, want_hidden) as captured,
    ):
        logits = last_position_logits(lm, batch)
        logprobs = logits.float().log_softmax(dim=-1).cpu() if want_logprobs else None
        hidden = captured["last"].float().cpu() if want_hidden else None
    return logprobs, hidden


def forward_rows(
    lm: LoadedModel,
    prompt_ids: Sequence[Sequence[int]],
    specs: Sequence[AblationSpec],
    *,
    want_logprobs: bool,
    want_hidden: bool,
    max_batch_rows: int,
    stats: ForwardStats | None = None,
) -> Iterator[BatchResult]:
    """Every (prompt, spec) row, batch by batch, in row order."""
    num_specs = len(specs)
    stats = stats if stats is not None else ForwardStats()
    cost = model_cost(lm)
    for rows in row_batches(len(prompt_ids) * num_specs, max_batch_rows):
        ids = [prompt_ids[r // num_specs] for r in rows]
        row_specs = [specs[r % num_specs] for r in rows]
        with stats.timed(lm.device):
            logprobs, hidden = forward_batch(lm, ids, row_specs, want_logprobs=want_logprobs, want_hidden=want_hidden)
        stats.record(cost, rows=len(rows), tokens=max(len(i) for i in ids))
        stats.rows += len(rows)
        yield BatchResult(rows=rows, logprobs=logprobs, hidden=hidden)
