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
from .attention_reuse import reusable_projections
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
    layer_projection_params: tuple[int, ...]  # of those, the separate q/k/v projections (copyable from a base row)
    layer_tail_params: tuple[int, ...]  # of those, o_proj and the MLP (run on the last position alone when sliced)


def _linear_params(layer: nn.Module) -> int:
    return sum(m.weight.numel() for m in layer.modules() if isinstance(m, nn.Linear))


def _tail_params(layer: nn.Module) -> int:
    mlp = getattr(layer, "mlp", None)
    return layer.self_attn.o_proj.weight.numel() + (_linear_params(mlp) if isinstance(mlp, nn.Module) else 0)


def model_cost(lm: LoadedModel) -> ModelCost:
    config = lm.model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    geo = lm.geometry
    layers = decoder_layers(lm.model)
    return ModelCost(
        num_layers=geo.num_layers,
        num_heads=geo.num_heads,
        num_kv_heads=geo.num_kv_heads,
        head_dim=geo.head_dim,
        hidden_size=geo.hidden_size,
        intermediate_size=int(getattr(text, "intermediate_size", None) or 4 * geo.hidden_size),
        vocab_size=lm.vocab_size,
        dtype_bytes=torch.empty((), dtype=lm.dtype).element_size(),
        layer_matmul_params=tuple(_linear_params(layer) for layer in layers),
        layer_projection_params=tuple(
            sum(m.weight.numel() for m in reusable_projections(layer.self_attn)) for layer in layers
        ),
        layer_tail_params=tuple(_tail_params(layer) for layer in layers),
    )


def layer_flops(
    cost: ModelCost,
    layer: int,
    *,
    rows: int,
    tokens: int,
    copied_rows: int = 0,
    attention_heads: int | None = None,
    queries: int | None = None,
    tail_positions: int | None = None,
) -> float:
    """Estimated FLOPs of decoder layer `layer` on `rows` sequences of `tokens` positions.

    Weight matmuls: 2 * P_layer * T per row (P_layer = the weights of every nn.Linear in the layer:
    q, k, v, o, gate, up, down), less the q/k/v projections of `copied_rows` rows (copied from a
    base row, attention_reuse) and, when o_proj and the MLP run on `tail_positions` < T positions,
    their work on the others. Attention: 4 * d_h * T * queries per query head computed (scores
    Q K^T and the weighted sum of values over every key, as a masked kernel computes them; a causal
    kernel skipping the upper triangle does about half); default every head of every row, every
    position a query. Norms, RoPE, softmax and elementwise work are not counted.
    """
    queries = tokens if queries is None else queries
    tail_positions = tokens if tail_positions is None else tail_positions
    heads = rows * cost.num_heads if attention_heads is None else attention_heads
    weights = 2.0 * cost.layer_matmul_params[layer] * tokens * rows
    weights -= 2.0 * cost.layer_projection_params[layer] * tokens * copied_rows
    weights -= 2.0 * cost.layer_tail_params[layer] * (tokens - tail_positions) * rows
    return weights + 4.0 * cost.head_dim * tokens * queries * heads


def head_flops(cost: ModelCost, *, rows: int, kept_positions: int = 1) -> float:
    """lm_head on `kept_positions` positions per row: 2 * V * d each."""
    return 2.0 * cost.vocab_size * cost.hidden_size * kept_positions * rows


def forward_flops(
    cost: ModelCost,
    *,
    rows: int,
    tokens: int,
    first_layer: int = 0,
    kept_positions: int = 1,
) -> float:
    """Estimated FLOPs of one forward of `rows` sequences of `tokens` positions (padding included)
    through decoder layers first_layer..L-1 (layer_flops, each layer in full), then lm_head on
    `kept_positions` positions per row. Layers below first_layer are not run, so not counted.
    """
    layers = sum(layer_flops(cost, i, rows=rows, tokens=tokens) for i in range(first_layer, cost.num_layers))
    return layers + head_flops(cost, rows=rows, kept_positions=kept_positions)


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
        kept_positions: int = 1,
    ) -> None:
        """One full forward of `rows` x `tokens` (see forward_flops; the fast engine counts its
        resumed batches layer by layer itself)."""
        self.forwards += 1
        self.layer_tokens += rows * tokens * cost.num_layers
        self.flops += forward_flops(cost, rows=rows, tokens=tokens, kept_positions=kept_positions)
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
