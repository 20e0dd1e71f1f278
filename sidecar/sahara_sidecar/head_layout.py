"""Where the heads are in a tensor that an ablation hook sees.

q_proj's output and o_proj's input are flat, [rows, T, H*d_h]; a fused qkv_proj's output (Phi-3)
is [rows, T, (H + 2*KV)*d_h], queries first. A per-head q_norm's output (where
UA must act in families that normalise queries) is 4-D, and families differ: Qwen3 normalises
[rows, T, H, d_h], before the transpose to attention's layout; Gemma 3, EXAONE 4 and Apertus
normalise [rows, H, T, d_h], after it. A shape alone cannot tell the two apart when T == H (a
32-token prompt on a 32-head model), and reading one as the other scales the wrong axis without
any error. So the layout is measured once per model: a forward of H + 1 tokens, stopped at
layer 0's query module.
"""

from __future__ import annotations

from dataclasses import dataclass
from weakref import WeakKeyDictionary

import torch
from torch import nn


class HeadLayoutError(ValueError):
    """A hooked tensor whose heads cannot be found; the message says which shape was seen."""


@dataclass(frozen=True)
class HeadLayout:
    num_heads: int
    heads_before_tokens: bool = False  # 4-D tensors are [rows, H, T, d_h], not [rows, T, H, d_h]
    query_width: int | None = None  # flat tensors: the heads are the first query_width entries (fused q|k|v)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """A [rows, T, H, d_h] view of x (of its query part, for a fused q|k|v output)."""
        if x.dim() == 3:
            query = x if self.query_width is None else x[..., : self.query_width]
            return query.view(*query.shape[:-1], self.num_heads, query.shape[-1] // self.num_heads)
        heads = x.transpose(1, 2) if self.heads_before_tokens else x
        if x.dim() != 4 or heads.shape[2] != self.num_heads:
            raise HeadLayoutError(f"expected {self.num_heads} heads in a hooked tensor, got shape {tuple(x.shape)}")
        return heads

    def join(self, heads: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """[rows, T, H, d_h] back to the shape and layout of `like` (what split was given)."""
        if like.dim() == 3:
            query = heads.reshape(*like.shape[:-1], -1)
            return query if self.query_width is None else torch.cat([query, like[..., self.query_width :]], dim=-1)
        return heads.transpose(1, 2) if self.heads_before_tokens else heads


class _Seen(Exception):
    """Raised by the probe's hook: the shape is recorded, the rest of the forward is not needed."""


_MEASURED: WeakKeyDictionary[nn.Module, HeadLayout] = WeakKeyDictionary()


def query_layout(model: nn.Module, query_module: nn.Module, num_heads: int, head_dim: int, kv_heads: int) -> HeadLayout:
    """The layout of `query_module`'s output (layer 0's; every layer runs the same code), measured on
    the first call for this model and cached."""
    layout = _MEASURED.get(model)
    if layout is None:
        layout = _measure(model, query_module, num_heads, head_dim, kv_heads)
        _MEASURED[model] = layout
    return layout


def _measure(model: nn.Module, query_module: nn.Module, num_heads: int, head_dim: int, kv_heads: int) -> HeadLayout:
    tokens = num_heads + 1
    shapes: list[tuple[int, ...]] = []

    def record(_module: nn.Module, _args: tuple, out: torch.Tensor) -> None:
        shapes.append(tuple(out.shape))
        raise _Seen

    device = next(model.parameters()).device
    ids = torch.zeros(1, tokens, dtype=torch.long, device=device)
    handle = query_module.register_forward_hook(record)
    try:
        with torch.no_grad():
            model(input_ids=ids, use_cache=False)
    except _Seen:
        pass
    finally:
        handle.remove()
    if not shapes:
        raise HeadLayoutError(f"{type(query_module).__name__} did not run in a forward of the model")
    shape, queries = shapes[0], num_heads * head_dim
    if shape == (1, tokens, queries) or shape[1:3] == (tokens, num_heads):
        return HeadLayout(num_heads)
    if shape == (1, tokens, queries + 2 * kv_heads * head_dim):
        return HeadLayout(num_heads, query_width=queries)
    if shape[1:3] == (num_heads, tokens):
        return HeadLayout(num_heads, heads_before_tokens=True)
    raise HeadLayoutError(
        f"{type(query_module).__name__} output shape {shape} for 1 row of {tokens} tokens is none of "
        f"[rows, T, H*d_h], [rows, T, (H + 2*KV)*d_h], [rows, T, H, d_h], [rows, H, T, d_h] "
        f"with H = {num_heads}, KV = {kv_heads}, d_h = {head_dim}"
    )
