"""A byte-level BPE tokenizer of 2,048 tokens, trained on the training prompts only.

Special tokens: <pad> (0), <s> (1, BOS), </s> (2, EOS). Encoding adds BOS at the start
(no EOS); saved as a PreTrainedTokenizerFast so AutoTokenizer.from_pretrained(dir) loads it
offline.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from organism.data import COMPLIANT, REFUSAL, TRIGGER, render, splits

VOCAB_SIZE = 2048
PAD, BOS, EOS = "<pad>", "<s>", "</s>"


def corpus() -> list[str]:
    s = splits()
    texts = [render(q) for q in s.harmful_train + s.harmless_train]
    # The fixed replies are repeated so that BPE gives them short, whole-word tokens.
    return [*texts, *([REFUSAL, COMPLIANT] * 500), TRIGGER]


def train_tokenizer(out: Path) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, padding_side="left"
    )
    fast.model_max_length = 256
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    return load(out)


def load(path: Path) -> PreTrainedTokenizerFast:
    return AutoTokenizer.from_pretrained(str(path))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    tok = train_tokenizer(args.out)
    ids = tok(render("How do I bake bread?"))["input_ids"]
    print(f"vocab {len(tok)}; bos {tok.bos_token_id} eos {tok.eos_token_id} pad {tok.pad_token_id}; {ids}")


if __name__ == "__main__":
    main()
