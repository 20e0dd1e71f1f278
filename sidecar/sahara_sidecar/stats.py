"""What one Forward or Attribute call did: forwards, rows, layer-tokens, estimated FLOPs, seconds.

`ForwardStats` is filled by the engines as they run and sent as the stream's last message.
`ModelCost` holds the sizes the FLOP estimate (`forward_flops`) and the memory planner need,
read once from the loaded model.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from .ablation import decoder_layers
from .loading import LoadedModel


@dataclass(frozen=True)
class ModelCost:
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int
    dtype_bytes: int
    layer_matmul_params: tuple[int, ...]  # weights of every nn.Linear inside each decoder layer
    last_layer_tail_params: int  # of those, the last layer's o_proj and MLP (run on one position when sliced)


def _linear_params(layer: nn.Module) -> int:
    return sum(m.weight.numel() for m in layer.modules() if isinstance(m, nn.Linear))


def _tail_params(layer: nn.Module) -> int:
    mlp = getattr(layer, "mlp", None)
    return layer.self_attn.o_proj.weight.numel() + (_linear_params(mlp) if isinstance(mlp, nn.Module) else 0)


def model_cost(lm: LoadedModel) -> ModelCost:
    config = lm.model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    geo = lm.geometry
    return ModelCost(
        num_layers=geo.num_layers,
        num_heads=geo.num_heads,
        num_kv_heads=geo.num_kv_heads,
        head_dim=geo.head_dim,
        hidden_size=geo.hidden_size,
        intermediate_size=int(getattr(text, "intermediate_size", None) or 4 * geo.hidden_size),
        vocab_size=lm.vocab_size,
        dtype_bytes=torch.empty((), dtype=lm.dtype).element_size(),
        layer_matmul_params=tuple(_linear_params(layer) for layer in decoder_layers(lm.model)),
        last_layer_tail_params=_tail_params(decoder_layers(lm.model)[-1]),
    )


def forward_flops(
    cost: ModelCost,
    *,
    rows: int,
    tokens: int,
    first_layer: int = 0,
    kept_positions: int = 1,
    sliced_last_layer: bool = False,
) -> float:
    """Estimated FLOPs of one forward of `rows` sequences of `tokens` positions (padding included)
    through decoder layers first_layer..L-1, then lm_head on `kept_positions` positions per row.

    Per row and layer: 2 * P_layer * T for the weight matmuls (P_layer = the weights of every
    nn.Linear in the layer: q, k, v, o, gate, up, down), plus 4 * H * d_h * T^2 for the attention
    scores (Q K^T) and the weighted sum of values (full T x T, as a masked kernel computes it; a
    causal kernel skipping the upper triangle does about half). Plus 2 * V * d per kept position
    for lm_head. Norms, RoPE, softmax and elementwise work are not counted. Layers below
    first_layer (resumed from the clean pass) are not run, so not counted. With sliced_last_layer
    the last layer's o_proj and MLP run on one position (fast.last_layer_sliced).
    """
    weights = 2.0 * sum(cost.layer_matmul_params[first_layer:]) * tokens
    if sliced_last_layer:
        weights -= 2.0 * cost.last_layer_tail_params * (tokens - 1)
    attention = 4.0 * cost.num_heads * cost.head_dim * tokens * tokens * (cost.num_layers - first_layer)
    head = 2.0 * cost.vocab_size * cost.hidden_size * kept_positions
    return float(rows) * (weights + attention + head)


@dataclass
class ForwardStats:
    """The ForwardStats trailer (proto field meanings); engines add to it as they run."""

    compute_seconds: float = 0.0  # model work only (inside `timed`), not the time the caller spends streaming
    forwards: int = 0  # model forward calls, clean passes included
    rows: int = 0  # result rows delivered: (prompt, spec) pairs for Forward, prompts for Attribute
    layer_tokens: int = 0  # sum over forwards of rows x padded tokens x layers run
    flops: float = 0.0  # forward_flops of everything run
    max_batch_rows: int = 0  # the largest batch of one forward
    oom_splits: int = 0  # batches split in half after running out of memory

    def record(
        self,
        cost: ModelCost,
        *,
        rows: int,
        tokens: int,
        first_layer: int = 0,
        kept_positions: int = 1,
        sliced_last_layer: bool = False,
        forwards: int = 1,
    ) -> None:
        """One forward of `rows` x `tokens` through layers first_layer..L-1 (see forward_flops).

        forwards=0: rows that share a model call counted elsewhere (the fast engine's merged resume)."""
        self.forwards += forwards
        self.layer_tokens += rows * tokens * (cost.num_layers - first_layer)
        self.flops += forward_flops(
            cost,
            rows=rows,
            tokens=tokens,
            first_layer=first_layer,
            kept_positions=kept_positions,
            sliced_last_layer=sliced_last_layer,
        )
        self.max_batch_rows = max(self.max_batch_rows, rows)

    @contextmanager
    def timed(self, device: torch.device) -> Iterator[None]:
        """Add the block's wall time to compute_seconds (device work finished: CUDA is synchronised)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            self.compute_seconds += time.perf_counter() - start
