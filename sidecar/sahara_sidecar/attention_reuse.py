"""Attention computed only where a resumed row's result can differ (the fast engine's resume).

Two places in a resumed batch need less than every row's full attention:

- the last decoder layer: only the last position's output is read (the final norm and lm_head see
  it alone), so attention runs for the last query only; every key and value is still used.
- a row's start layer: a row joining the batch at layer l has the same input there as its base row,
  so its q/k/v projections equal the base row's (copied, not recomputed), and every head it does
  not ablate at layer l outputs exactly what the base row's head outputs. Only the heads ablated at
  l in the row or its base (their kv groups under GQA) are computed afresh, from the row's own
  query, which the ablation hooks have already changed (UA, MEAN); SC acts on o_proj's input, later.

Both act inside transformers' attention interface, the function an attention module calls with
query, key and value after its projections, norms and rotary embedding, so no per-family forward
code is needed: the interface's "sdpa" entry is wrapped while a resume runs, and the wrapper looks
up the calling module's LayerPlan (no plan: the original function, unchanged). Models loaded with
another attention implementation run every row's full attention, as before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .ablation import AblationSpec
from .module_patches import attention_function_replaced, forwards_replaced

WRAPPED_IMPLEMENTATION = "sdpa"
INPUT_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "qkv_proj")  # qkv_proj: fused (Phi-3)


@dataclass(frozen=True)
class StartReuse:
    """Rows [split, rows) of a batch join at this layer and reuse their base rows (all below split)."""

    split: int
    base_of: torch.Tensor  # [rows - split] batch index of each joining row's base row
    pair_rows: torch.Tensor  # [P] batch index of a (row, kv group) pair computed afresh
    pair_groups: torch.Tensor  # [P] its kv group
    fresh_heads: int  # query heads computed afresh in all (P x query heads per kv group)

    def with_copies(self, computed: torch.Tensor) -> torch.Tensor:
        """The rows below split as computed, then each joining row's copy of its base row's."""
        return torch.cat([computed, computed.index_select(0, self.base_of)])


@dataclass(frozen=True)
class LayerPlan:
    last_query_only: bool
    reuse: StartReuse | None


def plan_start_reuse(
    layer: int,
    split: int,
    base_prompts: Sequence[int],
    joining_prompts: Sequence[int],
    base_specs: Sequence[AblationSpec],
    joining_specs: Sequence[AblationSpec],
    query_heads_per_group: int,
    device: torch.device,
) -> StartReuse | None:
    """The reuse of the rows joining at `layer` (batch rows split, split+1, ...), or None when one
    of them has no base row in the batch (the base rows went in an earlier batch)."""
    base_row = {prompt: row for row, prompt in enumerate(base_prompts)}
    if not joining_prompts or any(prompt not in base_row for prompt in joining_prompts):
        return None
    base_of = [base_row[prompt] for prompt in joining_prompts]
    pair_rows, pair_groups = [], []
    for offset, (spec, base) in enumerate(zip(joining_specs, base_of, strict=True)):
        heads = {h for lay, h in spec.heads if lay == layer} | {h for lay, h in base_specs[base].heads if lay == layer}
        for group in sorted({h // query_heads_per_group for h in heads}):
            pair_rows.append(split + offset)
            pair_groups.append(group)

    def as_index(values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=device)

    return StartReuse(
        split, as_index(base_of), as_index(pair_rows), as_index(pair_groups), len(pair_groups) * query_heads_per_group
    )


def _rows(mask: torch.Tensor | None, rows: slice | torch.Tensor) -> torch.Tensor | None:
    """The mask of some rows (a broadcast mask, or none, serves every row)."""
    return mask if mask is None or mask.shape[0] == 1 else mask[rows]


def _reused(original: Callable, plan: StartReuse, module, query, key, value, mask, **kwargs) -> torch.Tensor:
    split = plan.split
    full, _ = original(module, query[:split], key[:split], value[:split], _rows(mask, slice(None, split)), **kwargs)
    out = plan.with_copies(full)  # [rows, queries, heads, d_h]
    if plan.pair_rows.numel():
        kv, per_group = key.shape[1], query.shape[1] // key.shape[1]
        rows, groups = plan.pair_rows, plan.pair_groups
        fresh, _ = original(
            module,
            query.unflatten(1, (kv, per_group))[rows, groups],  # [P, per_group, queries, d_h]
            key[rows, groups].unsqueeze(1),
            value[rows, groups].unsqueeze(1),
            _rows(mask, rows),
            **kwargs,
        )
        out.unflatten(2, (kv, per_group))[rows, :, groups] = fresh  # fresh: [P, queries, per_group, d_h]
    return out


@contextmanager
def planned_attention(model: nn.Module) -> Iterator[dict[nn.Module, LayerPlan] | None]:
    """While active, attention modules with a plan in the yielded dict follow it (see the module
    docstring); None (nothing installed) when the model does not use the wrapped implementation."""
    config = model.config
    if getattr(config, "_attn_implementation", None) != WRAPPED_IMPLEMENTATION:
        yield None
        return
    plans: dict[nn.Module, LayerPlan] = {}

    def planned(original: Callable) -> Callable:
        def attention(module, query, key, value, attention_mask, *args, **kwargs):
            plan = plans.get(module)
            if plan is None or args or kwargs.get("position_bias") is not None:
                return original(module, query, key, value, attention_mask, *args, **kwargs)
            width = query.shape[2]
            if plan.last_query_only:
                query = query[:, :, -1:]
                attention_mask = None if attention_mask is None else attention_mask[..., -1:, :]
            if plan.reuse is None:
                out, _ = original(module, query, key, value, attention_mask, **kwargs)
            else:
                out = _reused(original, plan.reuse, module, query, key, value, attention_mask, **kwargs)
            if plan.last_query_only:  # the module reshapes [rows, T, heads * d_h]; only the last position is read
                out = out.expand(out.shape[0], width, *out.shape[2:])
            return out, None

        return attention

    with attention_function_replaced(WRAPPED_IMPLEMENTATION, planned):  # every model's, until the block ends
        yield plans


def reusable_projections(attention: nn.Module) -> list[nn.Linear]:
    """The q/k/v projections of an attention module, separate or one fused qkv_proj, where each is a
    plain nn.Linear: replayed as F.linear(x, weight, bias). A subclass with its own forward (the
    quantized layers: FP8, BitNet, bitsandbytes) computes something else, so it is not replayed."""
    found = [getattr(attention, name, None) for name in INPUT_PROJECTIONS]
    return [
        m
        for m in found
        if isinstance(m, nn.Linear) and type(m).forward is nn.Linear.forward and "forward" not in m.__dict__
    ]


def projections_reused(attention: nn.Module, reuse: StartReuse | None) -> contextlib.AbstractContextManager[None]:
    """The joining rows' q/k/v projections are copies of their base rows' (same input), not matmuls.

    Forward hooks (the ablation's, on q_proj) still run on the whole output."""
    modules = reusable_projections(attention) if reuse is not None else []

    def reusing(linear: nn.Linear) -> Callable[[torch.Tensor], torch.Tensor]:
        def forward(x: torch.Tensor) -> torch.Tensor:
            return reuse.with_copies(F.linear(x[: reuse.split], linear.weight, linear.bias))

        return forward

    return forwards_replaced(modules, [reusing(linear) for linear in modules])
