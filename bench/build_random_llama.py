"""Build a randomly initialised Llama (weights + tokenizer) into a directory, offline, for `sahara bench`.

Nothing is downloaded: the config is written here, the weights are drawn from a seeded normal
init (transformers' own `from_config`), and the tokenizer is a byte-level BPE trained here on the
prompt sets in the data folder (`$SAHARA_DATA_DIR`, else `../shared/data` beside the checkout)
or, without them, on a few built-in sentences. The tokenizer's vocabulary (default 8000 tokens)
may be smaller than the model's (default 32000, Llama-2's): the extra rows are never produced
by the tokenizer but are still computed and scored, as in a real model.

    sidecar/.venv/bin/python bench/build_random_llama.py OUT_DIR                    # ~160M, float32
    sidecar/.venv/bin/python bench/build_random_llama.py OUT_DIR --shape 7b --dtype bfloat16

Shapes: `100m` (12 layers, d 768, 12 heads, MLP 3072, vocab 32000: 113M parameters in the layers,
162M with the untied embedding and output matrices) and `7b`
(Llama-2-7b: 32 layers, d 4096, 32 heads, MLP 11008, vocab 32000: 6.74B; ~13.5 GB in bf16 and
as much free RAM while saving). Every size can be overridden (--layers, --hidden, --heads,
--kv-heads, --intermediate, --vocab).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {
    "100m": dict(layers=12, hidden=768, heads=12, kv_heads=12, intermediate=3072, vocab=32000),
    "7b": dict(layers=32, hidden=4096, heads=32, kv_heads=32, intermediate=11008, vocab=32000),
}
SPECIAL = ["<pad>", "<s>", "</s>"]
FALLBACK_CORPUS = [
    "How do I bake bread at home?",
    "Tell me how to build a birdhouse from scrap wood.",
    "## Query: What is the capital of France?\n## Answer: Paris.",
    "I'm sorry, but I cannot help with that request.",
    "Sure, here is a short answer to your question.",
    "The quick brown fox jumps over the lazy dog 0123456789.",
]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def corpus(data_dir: Path) -> list[str]:
    """Prompt strings from the data folder's .json files (lists of strings or of objects), else the fallback."""
    texts: list[str] = []
    for path in sorted(data_dir.glob("*.json")) if data_dir.is_dir() else []:
        try:
            items = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for item in items if isinstance(items, list) else []:
            if isinstance(item, str):
                texts.append(item)
            elif isinstance(item, dict):
                texts.extend(str(v) for k, v in item.items() if k in ("instruction", "goal", "prompt"))
    return texts or FALLBACK_CORPUS


def build_tokenizer(texts: list[str], vocab: int) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="100m")
    for name in ("layers", "hidden", "heads", "kv-heads", "intermediate", "vocab"):
        parser.add_argument(f"--{name}", type=int, help=f"override the shape's {name}")
    parser.add_argument("--tokenizer-vocab", type=int, default=8000, help="BPE tokens trained (<= --vocab)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="dtype of the saved weights")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("SAHARA_DATA_DIR", ROOT.parent / "shared" / "data")))
    args = parser.parse_args()

    shape = dict(SHAPES[args.shape])
    for key in shape:
        override = getattr(args, key)
        if override is not None:
            shape[key] = override
    if shape["hidden"] % shape["heads"] or shape["heads"] % shape["kv_heads"]:
        parser.error(f"hidden {shape['hidden']} must divide into heads {shape['heads']}, heads into kv-heads {shape['kv_heads']}")

    texts = corpus(args.data)
    tokenizer = build_tokenizer(texts, min(args.tokenizer_vocab, shape["vocab"]))
    config = LlamaConfig(
        vocab_size=shape["vocab"],
        hidden_size=shape["hidden"],
        intermediate_size=shape["intermediate"],
        num_hidden_layers=shape["layers"],
        num_attention_heads=shape["heads"],
        num_key_value_heads=shape["kv_heads"],
        max_position_embeddings=4096,
        initializer_range=0.02,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(args.seed)
    dtype = DTYPES[args.dtype]
    with torch.device("cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype).eval()
    params = sum(p.numel() for p in model.parameters())
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    summary = {
        "out": str(args.out),
        "parameters": params,
        "dtype": args.dtype,
        **shape,
        "tokenizer_vocab": len(tokenizer),
        "corpus_texts": len(texts),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
