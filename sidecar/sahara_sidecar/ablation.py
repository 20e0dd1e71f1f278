"""Head ablation as data, applied by hooks at the projections of an unmodified HF model.

A forward batch is a list of rows; each row carries its own AblationSpec (or none, the clean
model). Hooks read per-row, per-head factors, so one forward can ablate a different set of
heads in every row. Methods (METHOD.md):

- UA   (undifferentiated attention): the head's query is multiplied by eps. Hooked at the
       q_proj output (the query part of a fused qkv_proj, Phi-3), or at q_norm's output for
       families that normalise queries (Qwen3, Gemma3, OLMo 2), where scaling before the norm
       would be undone by it. head_layout.py finds the heads in these tensors.
- SC   (scaling contribution): the head's output, i.e. its slice of the o_proj input, is
       multiplied by eps.
- MEAN: the head's query is replaced by the mean query over all query heads of its layer.

With GQA only the named query head changes; the shared key/value head is never touched.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from . import head_layout
from .head_layout import HeadLayout, HeadLayoutError

METHODS = ("ua", "sc", "mean")


class AblationError(ValueError):
    """A spec that cannot be applied to this model; the message says what and where."""


@dataclass(frozen=True)
class AblationSpec:
    heads: tuple[tuple[int, int], ...] = ()
    method: str = "ua"
    eps: float = 1e-5

    @property
    def is_clean(self) -> bool:
        return not self.heads


@dataclass(frozen=True)
class AttentionGeometry:
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int


def decoder(model: nn.Module) -> nn.Module:
    """The decoder stack, holding .layers and .norm: get_decoder() in most families, model.model
    where get_decoder() answers the causal LM itself (Llama 4 in transformers 5)."""
    base = model.get_decoder() if hasattr(model, "get_decoder") else model
    inner = getattr(model, "model", None)
    if getattr(base, "layers", None) is None and isinstance(inner, nn.Module):
        return inner
    return base


def decoder_layers(model: nn.Module) -> Sequence[nn.Module]:
    """The transformer blocks of a causal LM (model.model.layers for Llama-like families)."""
    layers = getattr(decoder(model), "layers", None)
    if layers is None:
        raise AblationError(f"{type(model).__name__}: no decoder layers found (expected .model.layers)")
    return layers


def query_projection(attn: nn.Module) -> nn.Module | None:
    """The linear map that computes an attention module's queries: q_proj, or a fused qkv_proj whose
    output is [queries | keys | values] (Phi-3); None if it has neither."""
    return getattr(attn, "q_proj", None) or getattr(attn, "qkv_proj", None)


def attention_modules(model: nn.Module) -> list[nn.Module]:
    modules = []
    for index, layer in enumerate(decoder_layers(model)):
        attn = getattr(layer, "self_attn", None)
        if attn is None or query_projection(attn) is None or not hasattr(attn, "o_proj"):
            raise AblationError(
                f"layer {index}: attention has no q_proj (or fused qkv_proj) and o_proj; this family is not supported"
            )
        modules.append(attn)
    return modules


def geometry(model: nn.Module) -> AttentionGeometry:
    config = model.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    num_heads = int(text_config.num_attention_heads)
    num_kv_heads = int(getattr(text_config, "num_key_value_heads", None) or num_heads)
    head_dim = int(getattr(text_config, "head_dim", None) or text_config.hidden_size // num_heads)
    return AttentionGeometry(
        num_layers=int(text_config.num_hidden_layers),
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=head_dim,
        hidden_size=int(text_config.hidden_size),
    )


def validate_spec(spec: AblationSpec, geo: AttentionGeometry, where: str = "spec") -> None:
    if spec.method not in METHODS:
        raise AblationError(f"{where}.method: unknown method {spec.method!r}; expected one of {', '.join(METHODS)}")
    if not math.isfinite(spec.eps):
        raise AblationError(f"{where}.eps: must be a finite number, got {spec.eps!r}")
    for i, (layer, head) in enumerate(spec.heads):
        if not 0 <= layer < geo.num_layers:
            raise AblationError(
                f"{where}.heads[{i}] L{layer}H{head}: layer {layer} out of range; "
                f"the model has {geo.num_layers} layers (0..{geo.num_layers - 1})"
            )
        if not 0 <= head < geo.num_heads:
            raise AblationError(
                f"{where}.heads[{i}] L{layer}H{head}: head {head} out of range; "
                f"the model has {geo.num_heads} query heads per layer (0..{geo.num_heads - 1})"
            )


@dataclass
class _LayerFactors:
    """Per-row, per-head factors of one layer: [rows, heads]."""

    query_scale: torch.Tensor | None = None  # UA
    query_mean: torch.Tensor | None = None  # MEAN (bool mask)
    output_scale: torch.Tensor | None = None  # SC


@dataclass
class RowAblations:
    """The factors every hooked layer needs for one batch of rows."""

    rows: int
    layers: dict[int, _LayerFactors] = field(default_factory=dict)

    @property
    def first_layer(self) -> int | None:
        return min(self.layers) if self.layers else None


def row_factors(specs: Sequence[AblationSpec | None], geo: AttentionGeometry) -> RowAblations:
    """Turn one spec per batch row into the per-layer factor tensors the hooks multiply by."""
    plan = RowAblations(rows=len(specs))
    # (layer, method) -> rows, heads, values; one indexed write per tensor, not one per row
    # (a fast-engine batch has hundreds of rows).
    entries: dict[tuple[int, str], tuple[list[int], list[int], list[float]]] = {}
    for row, spec in enumerate(specs):
        if spec is None or spec.is_clean:
            continue
        for layer, head in spec.heads:
            rows, heads, values = entries.setdefault((layer, spec.method), ([], [], []))
            rows.append(row)
            heads.append(head)
            values.append(spec.eps)
    shape = (len(specs), geo.num_heads)
    for (layer, method), (rows, heads, values) in entries.items():
        factors = plan.layers.setdefault(layer, _LayerFactors())
        where = (torch.tensor(rows), torch.tensor(heads))
        if method in ("ua", "sc"):
            scale = torch.ones(shape, dtype=torch.float64)
            scale[where] = torch.tensor(values, dtype=torch.float64)
            if method == "ua":
                factors.query_scale = scale
            else:
                factors.output_scale = scale
        else:
            factors.query_mean = torch.zeros(shape, dtype=torch.bool)
            factors.query_mean[where] = True
    return plan


def query_modules(model: nn.Module) -> list[nn.Module]:
    """Where each layer's query is hooked (UA, MEAN): q_norm's output in families that normalise
    queries (scaling before the norm would be undone by it), else the query projection's."""
    return [getattr(attn, "q_norm", None) or query_projection(attn) for attn in attention_modules(model)]


def query_layout(model: nn.Module) -> HeadLayout:
    """The head layout of the query modules' outputs (head_layout: measured once per model)."""
    try:
        geo = geometry(model)
        return head_layout.query_layout(model, query_modules(model)[0], geo.num_heads, geo.head_dim, geo.num_kv_heads)
    except HeadLayoutError as err:
        raise AblationError(f"{type(model).__name__}: cannot locate the query heads: {err}") from err


def _apply_query(q: torch.Tensor, factors: _LayerFactors, layout: HeadLayout) -> torch.Tensor:
    heads, rows = layout.split(q), q.shape[0]
    if factors.query_mean is not None:
        mask = factors.query_mean[:rows].to(heads.device)[:, None, :, None]
        heads = torch.where(mask, heads.mean(dim=2, keepdim=True).expand_as(heads), heads)
    if factors.query_scale is not None:
        heads = heads * factors.query_scale[:rows].to(device=heads.device, dtype=heads.dtype)[:, None, :, None]
    return layout.join(heads, q)


def _apply_output(x: torch.Tensor, factors: _LayerFactors, layout: HeadLayout) -> torch.Tensor:
    heads, rows = layout.split(x), x.shape[0]
    heads = heads * factors.output_scale[:rows].to(device=heads.device, dtype=heads.dtype)[:, None, :, None]
    return layout.join(heads, x)


def _move_factors(factors: _LayerFactors, device: torch.device) -> None:
    """Put the factors on the layer's device once, not in every forward (each generated token), in
    float32: the hooks cast them to the activations' dtype. Not to the weights' dtype, which in a
    quantized checkpoint (float8, packed integers) would round eps (1e-5 to 0 in float8_e4m3fn)."""
    if factors.query_scale is not None:
        factors.query_scale = factors.query_scale.to(device=device, dtype=torch.float32)
    if factors.output_scale is not None:
        factors.output_scale = factors.output_scale.to(device=device, dtype=torch.float32)
    if factors.query_mean is not None:
        factors.query_mean = factors.query_mean.to(device=device)


def _check_rows(tensor: torch.Tensor, plan: RowAblations, prefixes: bool) -> None:
    rows = tensor.shape[0]
    if rows != plan.rows and not (prefixes and rows < plan.rows):
        raise AblationError(f"batch has {rows} rows but the ablation plan has {plan.rows}")


@contextmanager
def ablated(
    model: nn.Module, specs: Sequence[AblationSpec | None], *, prefixes: bool = False
) -> Iterator[RowAblations]:
    """Install hooks so that every forward inside the block ablates row i by specs[i].

    The batch size of every forward inside the block must equal len(specs) (true for
    generate without beams); with prefixes=True it may also be smaller, the first rows (the fast
    engine's resumed batch, which grows layer by layer). Hooks are removed on exit, also on error.
    """
    geo = geometry(model)
    for i, spec in enumerate(specs):
        if spec is not None:
            validate_spec(spec, geo, where=f"specs[{i}]")
    plan = row_factors(specs, geo)
    handles = []
    attns = attention_modules(model)
    queries = query_modules(model)
    query_heads = query_layout(model) if plan.layers else HeadLayout(geo.num_heads)
    flat = HeadLayout(geo.num_heads)  # o_proj's input
    try:
        for layer, factors in plan.layers.items():
            attn = attns[layer]
            _move_factors(factors, attn.o_proj.weight.device)
            if factors.query_scale is not None or factors.query_mean is not None:

                def query_hook(_m, _inp, out, factors=factors):
                    _check_rows(out, plan, prefixes)
                    return _apply_query(out, factors, query_heads)

                handles.append(queries[layer].register_forward_hook(query_hook))
            if factors.output_scale is not None:

                def output_hook(_m, args, factors=factors):
                    _check_rows(args[0], plan, prefixes)
                    return (_apply_output(args[0], factors, flat), *args[1:])

                handles.append(attn.o_proj.register_forward_pre_hook(output_hook))
        yield plan
    finally:
        for handle in handles:
            handle.remove()
