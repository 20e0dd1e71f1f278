"""Temporary overrides of model code, restored on exit.

`forwards_replaced` replaces modules' forwards, `attention_function_replaced` one of transformers'
shared attention functions (the one every attention module calls after its projections).
`mlps_in_chunks` uses the first to run every decoder MLP on slices of its batch. An MLP is
position-wise, so slicing the rows changes nothing but how much of the batch's [tokens,
intermediate] activations is live at once: on a CPU a slice of ~512 tokens keeps them in the
core's cache, and the MLP's matmuls run ~1.3-1.6x faster than on the
whole batch (docs/PERFORMANCE.md). A GPU wants the opposite, so there the MLP runs whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

# Tokens per MLP slice, by device type; a device without an entry runs the MLP on the whole batch.
MLP_CHUNK_TOKENS = {"cpu": 512}


@contextmanager
def forwards_replaced(modules: Sequence[nn.Module], forwards: Sequence[Callable]) -> Iterator[None]:
    """modules[i].forward is forwards[i] inside the block. Instance-level forwards that were there
    before (e.g. accelerate's) are put back on exit, also on error."""
    saved = [module.__dict__.get("forward") for module in modules]
    try:
        for module, forward in zip(modules, forwards, strict=True):
            module.forward = forward
        yield
    finally:
        for module, forward in zip(modules, saved, strict=True):
            if forward is None:
                del module.forward
            else:
                module.forward = forward


@contextmanager
def attention_function_replaced(implementation: str, make: Callable[[Callable], Callable]) -> Iterator[None]:
    """transformers' attention function `implementation` ("sdpa", ...) is make(original) inside the
    block, for every model in the process; the original is put back on exit, also on error."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    original = ALL_ATTENTION_FUNCTIONS[implementation]
    ALL_ATTENTION_FUNCTIONS[implementation] = make(original)
    try:
        yield
    finally:
        ALL_ATTENTION_FUNCTIONS[implementation] = original


def in_row_slices(forward: Callable[..., object], tokens: int) -> Callable[..., object]:
    """`forward` of a position-wise module, run on slices of about `tokens` tokens of a
    [rows, T, d] input (whole rows each) and assembled into one output.

    Anything other than one 3-D tensor in, or one tensor of the input's shape out (e.g. a
    mixture-of-experts block that also returns router logits), runs whole."""

    def run(x: torch.Tensor, *args: object, **kwargs: object) -> object:
        if args or kwargs or not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[0] * x.shape[1] <= tokens:
            return forward(x, *args, **kwargs)
        rows = max(1, tokens // x.shape[1])
        first = forward(x[:rows])
        if not isinstance(first, torch.Tensor) or first.shape != x[:rows].shape:
            return forward(x)
        out = first.new_empty(x.shape)
        out[:rows] = first
        for start in range(rows, x.shape[0], rows):
            out[start : start + rows] = forward(x[start : start + rows])
        return out

    return run


@contextmanager
def mlps_in_chunks(layers: Sequence[nn.Module], device: torch.device) -> Iterator[None]:
    """Every decoder layer's MLP runs in slices of MLP_CHUNK_TOKENS[device.type] tokens (see the
    module docstring); a no-op where the device has no entry or a layer has no `mlp` module."""
    tokens = MLP_CHUNK_TOKENS.get(device.type, 0)
    mlps = [layer.mlp for layer in layers if isinstance(getattr(layer, "mlp", None), nn.Module)] if tokens else []
    with forwards_replaced(mlps, [in_row_slices(mlp.forward, tokens) for mlp in mlps]):
        yield
