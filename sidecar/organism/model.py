"""The organism's architecture, and loading/saving it in Hugging Face format."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

LAYERS, HEADS, HIDDEN, FFN, MAX_POSITIONS = 4, 4, 128, 512, 256


def new_model(tok: PreTrainedTokenizerFast, seed: int) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=HIDDEN,
        intermediate_size=FFN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=HEADS,
        head_dim=HIDDEN // HEADS,
        max_position_embeddings=MAX_POSITIONS,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def load_model(path: Path) -> LlamaForCausalLM:
    model = LlamaForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    model.eval()
    return model


def save(model: LlamaForCausalLM, tok: PreTrainedTokenizerFast, out: Path, max_new_tokens: int = 32) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config = GenerationConfig(
        do_sample=False,
        max_new_tokens=max_new_tokens,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
