"""One entry point for Forward's engines.

- "fast"  (ENGINE_FAST, ENGINE_UNSPECIFIED): fast.py, many specs per forward + clean-pass reuse;
- "naive" (ENGINE_NAIVE): naive.py, one unpadded full-logits forward per (prompt, spec);
- "full"  (not on the wire): forward.py, many specs per forward, every row through every layer,
  batches sized from the memory budget. The path before clean-pass reuse, kept for comparison.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from .ablation import AblationSpec
from .fast import fast_rows
from .forward import BatchResult, forward_rows
from .host_buffers import HostBuffers
from .loading import LoadedModel
from .memory import activation_bytes_per_row, budget_bytes, plan_batch_rows
from .naive import naive_rows
from .stats import ForwardStats, model_cost

ENGINES = ("fast", "naive", "full")


def run_forward(
    lm: LoadedModel,
    prompt_ids: Sequence[Sequence[int]],
    specs: Sequence[AblationSpec],
    *,
    engine: str = "fast",
    want_logprobs: bool,
    want_hidden: bool,
    max_batch_rows: int = 0,
    memory_budget_gib: float = 0.0,
    stats: ForwardStats | None = None,
    output_buffers: HostBuffers | None = None,
) -> Iterator[BatchResult]:
    """Every (prompt, spec) row in row order (r = n*M + m), in batches; `stats` is filled as they run.

    max_batch_rows > 0 caps the rows of one forward; memory_budget_gib 0 = auto (memory.py).
    `output_buffers`: where the fast engine puts its blocks' results (fast_rows).
    """
    stats = stats if stats is not None else ForwardStats()
    if engine == "fast":
        return fast_rows(
            lm,
            prompt_ids,
            specs,
            want_logprobs=want_logprobs,
            want_hidden=want_hidden,
            max_batch_rows=max_batch_rows,
            memory_budget_gib=memory_budget_gib,
            stats=stats,
            output_buffers=output_buffers,
        )
    if engine == "naive":
        return naive_rows(lm, prompt_ids, specs, want_logprobs=want_logprobs, want_hidden=want_hidden, stats=stats)
    if engine == "full":
        width = max(len(ids) for ids in prompt_ids)
        per_row = activation_bytes_per_row(model_cost(lm), width)
        rows = plan_batch_rows(budget_bytes(memory_budget_gib, lm.device), per_row, max_batch_rows)
        return forward_rows(
            lm,
            prompt_ids,
            specs,
            want_logprobs=want_logprobs,
            want_hidden=want_hidden,
            max_batch_rows=rows,
            stats=stats,
        )
    raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
