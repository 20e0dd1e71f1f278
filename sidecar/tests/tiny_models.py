"""Tiny random causal LMs of several families, built offline from configs, for tests.

Every model is seeded, float32, 3 layers, hidden size 64, 4 query heads of size 16, with a
~300-token byte-level BPE tokenizer (BOS added by default, EOS, PAD) trained here on a few
sentences. `save` writes model and tokenizer to a directory so tests load them through the
real `from_pretrained` path, as the sidecar does.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    Gemma3Config,
    Gemma3TextConfig,
    GraniteConfig,
    LlamaConfig,
    Mistral3Config,
    MistralConfig,
    Phi3Config,
    PixtralVisionConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen3Config,
    SiglipVisionConfig,
)

from sahara_sidecar.loading import model_class

FAMILIES = ("llama", "qwen2", "mistral")
# Per-head q_norm, where UA must act after the norm: Qwen3 normalises [rows, T, H, d_h], Gemma 3
# [rows, H, T, d_h] (head_layout.py).
# Phi-3 computes queries, keys and values in one fused qkv_proj. Granite divides its logits by
# logits_scaling after lm_head (and scales embeddings, residuals and attention). gemma3_vision is
# Gemma 3 as its released checkpoints are (model_type gemma3: a vision tower, the decoder one level
# further down, soft-capped logits), loaded as Gemma3ForConditionalGeneration. mistral3_vision is
# Mistral Small 3.1/3.2's form (a Pixtral vision tower over the Mistral decoder), a model type that
# is not a causal LM to transformers, loaded as Mistral3ForConditionalGeneration.
EXTRA_FAMILIES = ("qwen3", "gemma3", "phi3", "granite", "gemma3_vision", "mistral3_vision")
VOCAB_SIZE = 300
SPECIAL = ["<pad>", "<s>", "</s>"]
CORPUS = [
    "How do I bake bread at home?",
    "Tell me how to build a birdhouse from scrap wood.",
    "## Query: What is the capital of France?\n## Answer: Paris.",
    "I'm sorry, but I cannot help with that request.",
    "Sure, here is a short answer to your question.",
    "The quick brown fox jumps over the lazy dog 0123456789.",
]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tokenizer(chat_template: str | None = None) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    if chat_template:
        wrapped.chat_template = chat_template
    return wrapped


def common_config(tokenizer: PreTrainedTokenizerFast) -> dict[str, object]:
    """The config fields every tiny model shares (sidecar/tools/families.py uses them for any family)."""
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=256,
        initializer_range=0.2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_config(family: str, tokenizer: PreTrainedTokenizerFast):
    common = common_config(tokenizer)
    if family == "llama":
        return LlamaConfig(num_key_value_heads=4, tie_word_embeddings=False, **common)
    if family == "qwen2":  # GQA (2 query heads per kv head), q/k/v bias, tied embeddings
        return Qwen2Config(num_key_value_heads=2, tie_word_embeddings=True, **common)
    if family == "mistral":  # GQA (all 4 query heads share one kv head)
        return MistralConfig(num_key_value_heads=1, sliding_window=None, tie_word_embeddings=False, **common)
    if family == "qwen3":  # GQA, q_norm/k_norm per head
        return Qwen3Config(num_key_value_heads=2, head_dim=16, tie_word_embeddings=True, **common)
    if family in ("gemma3", "gemma3_vision"):  # GQA, q_norm/k_norm per head after the transpose
        layer_types = ["sliding_attention", "full_attention", "sliding_attention"]  # a window shorter than prompts
        text = Gemma3TextConfig(num_key_value_heads=2, head_dim=16, sliding_window=8, layer_types=layer_types, **common)
        if family == "gemma3":
            return text
        text.final_logit_softcapping = 3.0
        vision = SiglipVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=28,
            patch_size=14,
        )
        return Gemma3Config(text_config=text.to_dict(), vision_config=vision.to_dict(), mm_tokens_per_image=4)
    if family == "mistral3_vision":
        text = MistralConfig(num_key_value_heads=2, sliding_window=None, tie_word_embeddings=False, **common)
        vision = PixtralVisionConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, head_dim=16, image_size=28
        )
        return Mistral3Config(text_config=text.to_dict(), vision_config=vision.to_dict(), spatial_merge_size=1)
    if family == "phi3":  # GQA, fused qkv_proj ([queries | keys | values]) and gate_up_proj
        return Phi3Config(num_key_value_heads=2, sliding_window=None, tie_word_embeddings=False, **common)
    if family == "granite":  # logits divided by logits_scaling after lm_head (8-16 in released models;
        # here with unit residual and embedding multipliers, so that this random model's ablations matter)
        return GraniteConfig(
            num_key_value_heads=2, logits_scaling=2.0, attention_multiplier=0.25, tie_word_embeddings=True, **common
        )
    raise ValueError(family)


def build_model(family: str, tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = build_config(family, tokenizer)
    model = model_class(config).from_config(config, dtype=torch.float32)
    with torch.no_grad():  # random biases too, so weight surgery must scale them
        for name, parameter in model.named_parameters():
            if name.endswith(".bias"):
                parameter.normal_(0.0, 0.2)
    return model.eval()


def save_from_config(config, tokenizer: PreTrainedTokenizerFast, directory: Path, seed: int = 0) -> Path:
    """A seeded random float32 model of any config (causal LM or vision-language) and the tokenizer,
    saved where from_pretrained reads them."""
    torch.manual_seed(seed)
    model_class(config).from_config(config, dtype=torch.float32).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def save(family: str, directory: Path, chat_template: str | None = None, seed: int = 0) -> Path:
    tokenizer = build_tokenizer(chat_template)
    model = build_model(family, tokenizer, seed)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
