"""Load a Hugging Face causal LM and its tokenizer offline, and describe what was loaded.

Everything else in the sidecar works on a `LoadedModel`: the model in eval mode, its
tokenizer, the attention geometry, and the decoder's final norm (whose output, the input
of lm_head, is the "hidden" tensor Sahara needs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from torch import nn

from . import ablation
from .fingerprint import model_fingerprint

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class LoadError(RuntimeError):
    """The model cannot be served; the message says why (the CLI exits with code 2)."""


@dataclass
class LoadedModel:
    name: str  # the path or hub id that was loaded
    model: nn.Module
    tokenizer: object  # a transformers tokenizer
    geometry: ablation.AttentionGeometry
    final_norm: nn.Module
    device: torch.device
    dtype: torch.dtype

    @property
    def vocab_size(self) -> int:
        return int(self.model.get_output_embeddings().weight.shape[0])

    @property
    def pad_token_id(self) -> int:
        """The id used for left padding (pad, else eos, else 0); padded positions are masked anyway."""
        for token_id in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id):
            if token_id is not None:
                return int(token_id)
        return 0

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    @cached_property
    def fingerprint(self) -> str:
        """Weights, config and tokenizer (fingerprint.py); computed at the first Describe, a pass over the weights."""
        return model_fingerprint(self.model, self.tokenizer)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise LoadError("--device cuda was asked for but torch sees no CUDA device")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise LoadError(f"unknown dtype {dtype!r}; expected one of auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def final_norm(model: nn.Module) -> nn.Module:
    """The norm applied to the residual stream before lm_head (model.model.norm in Llama-like families)."""
    norm = getattr(ablation.decoder(model), "norm", None)
    if not isinstance(norm, nn.Module):
        raise LoadError(f"{type(model).__name__}: no final norm found (expected .model.norm)")
    return norm


def load(name: str, device: str = "auto", dtype: str = "auto") -> LoadedModel:
    """Load from a local directory, or from the local Hugging Face cache for a hub id. Never downloads."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoConfig, AutoTokenizer

    path = Path(name)
    looks_like_path = path.is_absolute() or name.startswith(".") or path.exists() or name.count("/") != 1
    if looks_like_path and not path.is_dir():
        raise LoadError(f"model directory {name} does not exist")
    source = str(path.resolve()) if path.is_dir() else name

    try:
        config = AutoConfig.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as err:
        if source == name and not path.is_dir():
            raise LoadError(
                f"{name} is not a local directory and not in the Hugging Face cache; the sidecar never downloads: "
                "pass a model directory, or fetch the model into the cache first"
            ) from err
        raise LoadError(f"cannot read a model config from {name}: {err}") from err
    auto_class = model_class(config)
    if auto_class is None:
        raise LoadError(
            f"{name}: model type {config.model_type!r} is neither a causal LM nor a vision-language model "
            "with a language model that transformers knows"
        )

    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    try:
        model = auto_class.from_pretrained(source, dtype=torch_dtype, local_files_only=True)
    except (OSError, ValueError) as err:
        raise LoadError(f"cannot load the model from {name}: {err}") from err
    check_structure(name, model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as err:
        raise LoadError(f"cannot load the tokenizer from {name}: {err}") from err
    model.to(torch_device).eval()
    lm = wrap(source, model, tokenizer)
    # Checks that run the model (their modules import this one): UA's scaling reaches attention, and
    # the fast engine agrees with the naive one; a family failing either is refused, not half-served.
    from .load_checks import check_engines_agree, check_query_ablation

    check_query_ablation(lm)
    check_engines_agree(lm)
    return lm


def model_class(config: object) -> type | None:
    """The auto class that builds this config's model with its language-model head: a causal LM, else
    a vision-language model (Mistral 3, LLaVA, ...), served on text prompts through its language model;
    None for anything else."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
    )

    model_type = getattr(config, "model_type", None)
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return AutoModelForCausalLM
    if model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        return AutoModelForImageTextToText
    return None


def check_structure(name: str, model: nn.Module) -> None:
    """Ablation needs decoder layers with self_attn.q_proj / o_proj and a final norm."""
    try:
        ablation.attention_modules(model)
        final_norm(model)
        ablation.query_layout(model)  # measured here (a short forward), not in the first request
    except (ablation.AblationError, LoadError) as err:
        raise unsupported(
            name,
            model,
            f"{err}. The sidecar needs decoder layers (.model.layers) whose self_attn has q_proj (or a fused "
            "qkv_proj) and o_proj, and .model.norm",
        ) from err


def unsupported(name: str, model: nn.Module, reason: str) -> LoadError:
    """The refusal of a model whose family the sidecar cannot serve, and why."""
    return LoadError(f"{name}: model type {model.config.model_type!r} is not supported: {reason}")


def wrap(name: str, model: nn.Module, tokenizer: object) -> LoadedModel:
    """Check that the model has the structure ablation needs and bundle it with its facts."""
    check_structure(name, model)
    parameter = next(model.parameters())
    return LoadedModel(
        name=name,
        model=model,
        tokenizer=tokenizer,
        geometry=ablation.geometry(model),
        final_norm=final_norm(model),
        device=parameter.device,
        dtype=parameter.dtype,
    )


@dataclass(frozen=True)
class ParameterFacts:
    name: str
    shape: tuple[int, ...]
    count: int


def parameter_facts(model: nn.Module) -> tuple[list[ParameterFacts], int]:
    """Every named parameter (tied ones under each name) and the total over unique tensors."""
    facts: list[ParameterFacts] = []
    seen: set[int] = set()
    total = 0
    for name, parameter in model.named_parameters(remove_duplicate=False):
        facts.append(ParameterFacts(name, tuple(parameter.shape), parameter.numel()))
        if id(parameter) not in seen:
            seen.add(id(parameter))
            total += parameter.numel()
    return facts, total


def queries_normalised(model: nn.Module) -> bool:
    return any(getattr(attn, "q_norm", None) is not None for attn in ablation.attention_modules(model))


def query_bias(model: nn.Module) -> bool:
    """Whether the query projection (q_proj, or the query part of a fused qkv_proj) has a bias."""
    return getattr(ablation.query_projection(ablation.attention_modules(model)[0]), "bias", None) is not None


def output_bias(model: nn.Module) -> bool:
    return ablation.attention_modules(model)[0].o_proj.bias is not None


def max_positions(model: nn.Module) -> int:
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return int(getattr(config, "max_position_embeddings", 0) or 0)
