"""The naive engine, the way the authors' code computes Ships: one forward per (prompt, spec).

Each row is its prompt alone (batch size 1, no padding) with its spec's hooks installed, the
model's logits at every position (no logits_to_keep), nothing reused between rows; the last
position gives the row's log-probs and final-norm hidden state. For comparison and tests.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from .ablation import AblationSpec, ablated
from .forward import BatchResult, capture_last_token
from .loading import LoadedModel
from .stats import ForwardStats, model_cost


def naive_rows(
    lm: LoadedModel,
    prompt_ids: Sequence[Sequence[int]],
    specs: Sequence[AblationSpec],
    *,
    want_logprobs: bool,
    want_hidden: bool,
    stats: ForwardStats | None = None,
) -> Iterator[BatchResult]:
    """Every (prompt, spec) row, one forward each, in row order (r = n*M + m)."""
    stats = stats if stats is not None else ForwardStats()
    cost = model_cost(lm)
    num_specs = len(specs)
    for n, ids in enumerate(prompt_ids):
        input_ids = torch.tensor([list(ids)], dtype=torch.long, device=lm.device)
        for m, spec in enumerate(specs):
            with (
                stats.timed(lm.device),
                torch.inference_mode(),
                ablated(lm.model, [spec]),
                capture_last_token(lm.final_norm, want_hidden) as last,
            ):
                out = lm.model(input_ids=input_ids, use_cache=False)
                logprobs = out.logits[:, -1, :].float().log_softmax(dim=-1).cpu() if want_logprobs else None
                hidden = last["last"].float().cpu() if want_hidden else None
            stats.record(cost, rows=1, tokens=len(ids), kept_positions=len(ids))
            stats.rows += 1
            row = n * num_specs + m
            yield BatchResult(range(row, row + 1), logprobs, hidden)
