"""The definitions the ablation hooks are checked against (METHOD.md), for the tests and
tools/families.py: UA and SC as weight edits, and the attention pattern UA with eps -> 0 gives."""

from __future__ import annotations

import copy

import torch

from sahara_sidecar.ablation import AblationSpec, attention_modules, geometry, query_projection


def weight_surgery(model, spec: AblationSpec):
    """A deep copy with the spec's heads ablated in the weights: UA scales W_q rows (and bias; the first
    rows of a fused qkv_proj are the queries'), SC W_o columns."""
    edited = copy.deepcopy(model)
    d_h = geometry(model).head_dim
    attns = attention_modules(edited)
    with torch.no_grad():
        for layer, head in spec.heads:
            cols = slice(head * d_h, (head + 1) * d_h)
            if spec.method == "ua":
                query = query_projection(attns[layer])
                query.weight[cols, :] *= spec.eps
                if query.bias is not None:
                    query.bias[cols] *= spec.eps
            else:
                attns[layer].o_proj.weight[:, cols] *= spec.eps
    return edited


def uniform_causal(t: int) -> torch.Tensor:
    """Each query position attends equally to itself and every earlier position."""
    return torch.tril(torch.ones(t, t)) / torch.arange(1, t + 1, dtype=torch.float32)[:, None]
