"""A model's fingerprint: what its results depend on beyond the name it was loaded by.

The CLI keys stored results (Ships units, search steps, generated replies) by it, so that a model
directory whose weights, config or tokenizer changed is never answered with the old results.
"""

from __future__ import annotations

import hashlib
import json

import torch
from torch import nn

CHUNK_ELEMENTS = 1 << 24  # moments in pieces: a float copy of at most 64 MiB at a time


def parameter_moments(parameter: torch.Tensor) -> tuple[float, float]:
    """Sum and sum of squares in float64: any edit of a value moves them."""
    flat = parameter.detach().reshape(-1)
    total, squares = 0.0, 0.0
    for start in range(0, flat.numel(), CHUNK_ELEMENTS):
        piece = flat[start : start + CHUNK_ELEMENTS].double()
        total += piece.sum().item()
        squares += piece.square().sum().item()
    return total, squares


def model_fingerprint(model: nn.Module, tokenizer: object) -> str:
    """sha256 over every parameter's name, shape, dtype and moments (to 12 significant digits, so
    that the order of a device's reductions does not matter), the config (without paths and
    versions) and the tokenizer (vocabulary and merges, special tokens, chat template)."""
    digest = hashlib.sha256()
    moments: dict[int, tuple[float, float]] = {}  # a tied tensor (embeddings = lm_head) is read once
    for name, parameter in model.named_parameters(remove_duplicate=False):
        if id(parameter) not in moments:
            moments[id(parameter)] = parameter_moments(parameter)
        total, squares = moments[id(parameter)]
        digest.update(f"{name} {tuple(parameter.shape)} {parameter.dtype} {total:.12g} {squares:.12g}\n".encode())
    config = {k: v for k, v in model.config.to_dict().items() if not k.startswith("_") and k != "transformers_version"}
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocabulary = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    digest.update(vocabulary.encode())
    digest.update(json.dumps(getattr(tokenizer, "special_tokens_map", {}), sort_keys=True, default=str).encode())
    digest.update(str(getattr(tokenizer, "chat_template", None)).encode())
    return digest.hexdigest()
