"""First-order attribution (AtP) of every head's ablation effect, one forward + one backward per batch.

Every head of every layer gets a per-row scale alpha (1 = the clean model) where the ablation
hooks act: on the query (UA: q_proj output, or q_norm output where queries are normalised) or
on the head's output (SC: the o_proj input slice). Ablating head h moves its alpha from 1 to eps,
so the first-order estimate of the change of a metric f is

    delta_f(h) ~= (eps - 1) * df/dalpha_h   at alpha = 1.

The metric is f = log p(t*), the log-probability at the last prompt position of the clean model's
own top next token t* (argmax of the same forward). Why not the Ships KL itself: KL(clean || ablated)
is minimal (zero) at alpha = 1, so its gradient is exactly zero and the first-order estimate says
nothing. log p(t*) does move to first order, and when the clean distribution is peaked (a model
about to refuse: p(t*) near 1) the KL is close to -delta log p(t*), so it tracks the KL. The
attribution returned is |delta_f(h)| in nats (larger = more important); the sign is dropped because
a head whose ablation raises p(t*) also changes the distribution.

UA with eps ~ 0 makes that head's attention uniform, far from alpha = 1, so the linear estimate
can misrank heads whose effect is strongly non-linear (saturated softmax); score the top K exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from .ablation import AblationError, attention_modules, query_layout, query_modules
from .forward import last_position_logits
from .head_layout import HeadLayout
from .loading import LoadedModel
from .memory import activation_bytes_per_row, budget_bytes, plan_batch_rows, run_in_batches
from .prompts import left_pad
from .stats import ForwardStats, forward_flops, model_cost

ATTRIBUTION_METHODS = ("ua", "sc")
BACKWARD_FLOPS_FACTOR = 1.0  # the backward computes activation gradients only: about one forward's matmuls


@dataclass
class AttributionBatch:
    prompts: range  # prompt indices of this batch
    attribution: torch.Tensor  # [len(prompts), L, H] float32, cpu


def _scale(x: torch.Tensor, alpha: torch.Tensor, layout: HeadLayout) -> torch.Tensor:
    heads = layout.split(x)
    return layout.join(heads * alpha.to(heads.dtype)[:, None, :, None], x)


@contextmanager
def head_scales(model: nn.Module, alpha: torch.Tensor, method: str, num_heads: int) -> Iterator[None]:
    """Multiply head h of layer l in row r by alpha[r, l, h] where `method` ablates it."""
    handles = []
    queries, query_heads, flat = query_modules(model), query_layout(model), HeadLayout(num_heads)
    try:
        for layer, attn in enumerate(attention_modules(model)):
            if method == "ua":

                def query_hook(_m, _args, out, layer=layer):
                    return _scale(out, alpha[:, layer], query_heads)

                handles.append(queries[layer].register_forward_hook(query_hook))
            else:

                def output_hook(_m, args, layer=layer):
                    return (_scale(args[0], alpha[:, layer], flat), *args[1:])

                handles.append(attn.o_proj.register_forward_pre_hook(output_hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def attribute_batch(lm: LoadedModel, ids: Sequence[Sequence[int]], method: str, eps: float) -> torch.Tensor:
    """|(eps - 1) * d log p(t*) / d alpha| for every row and head: [rows, L, H] float32 on the CPU."""
    geo = lm.geometry
    batch = left_pad(ids, lm.pad_token_id, lm.device)
    alpha = torch.ones(len(ids), geo.num_layers, geo.num_heads, device=lm.device, requires_grad=True)
    with torch.enable_grad(), head_scales(lm.model, alpha, method, geo.num_heads):
        logprobs = last_position_logits(lm, batch).float().log_softmax(dim=-1)
        top = logprobs.detach().argmax(dim=-1, keepdim=True)
        metric = logprobs.gather(1, top).sum()  # rows are independent: the sum's gradient is per row
        (grad,) = torch.autograd.grad(metric, alpha)
    return ((eps - 1.0) * grad.double()).abs().float().cpu()


def attribute(
    lm: LoadedModel,
    prompt_ids: Sequence[Sequence[int]],
    *,
    method: str,
    eps: float,
    max_batch_rows: int = 0,
    memory_budget_gib: float = 0.0,
    stats: ForwardStats | None = None,
) -> Iterator[AttributionBatch]:
    """Attribution for every prompt, batch by batch, in prompt order."""
    if method not in ATTRIBUTION_METHODS:
        raise AblationError(
            f"method: attribution supports UA and SC only, not {method.upper()}; "
            "MEAN replaces the query instead of scaling it, so there is no scale to differentiate: "
            "score MEAN heads exactly with Forward"
        )
    stats = stats if stats is not None else ForwardStats()
    cost = model_cost(lm)
    width = max(len(ids) for ids in prompt_ids)
    per_row = activation_bytes_per_row(cost, width, layers_kept=cost.num_layers, with_grad=True)
    rows = plan_batch_rows(budget_bytes(memory_budget_gib, lm.device), per_row, max_batch_rows)

    def run(batch: Sequence[int]) -> torch.Tensor:
        ids = [prompt_ids[n] for n in batch]
        with stats.timed(lm.device):
            result = attribute_batch(lm, ids, method, eps)
        tokens = max(len(i) for i in ids)
        stats.record(cost, rows=len(batch), tokens=tokens)
        stats.flops += BACKWARD_FLOPS_FACTOR * forward_flops(cost, rows=len(batch), tokens=tokens)
        return result

    for batch, result in run_in_batches(list(range(len(prompt_ids))), rows, run, stats, lm.device):
        stats.rows += len(batch)
        yield AttributionBatch(range(batch[0], batch[-1] + 1), result)
