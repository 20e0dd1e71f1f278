"""Generation with one ablation spec applied to every row, at every step.

Prompts are cut into batches, left padded (generate derives position ids from the mask),
and run through model.generate with the spec's hooks installed for the whole call, so the
prompt pass and every new token see the ablated model. Greedy unless top_k > 0; then each row is
sampled with its own generator, seeded by the request's seed plus the prompt's index in it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from transformers import LogitsProcessor, LogitsProcessorList, TemperatureLogitsWarper

from .ablation import AblationSpec, ablated
from .loading import LoadedModel
from .memory import run_in_batches
from .prompts import left_pad
from .stats import ForwardStats

DEFAULT_MAX_NEW_TOKENS = 128  # the paper's setting


class FiniteScores(LogitsProcessor):
    """After the temperature when sampling: NaN and +inf scores (an extreme eps overflows the logits,
    a tiny temperature the scaled ones) become the dtype's min and max, so sampling never fails on
    them. The identity on finite scores and on -inf."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        info = torch.finfo(scores.dtype)
        return torch.nan_to_num(scores, nan=info.min, posinf=info.max, neginf=float("-inf"))


class RowSampler(LogitsProcessor):
    """Top-k sampling (the last processor), each row drawing from its own generator, seeded by the
    request's seed plus the row's prompt index: a reply does not depend on which prompts share its
    batch (max_batch_rows, an out-of-memory split, the CLI's unit size). The drawn token keeps
    score 0 and every other token -inf, so generate's greedy choice takes it. Ties at the k-th
    score are kept, as transformers' top-k warper keeps them."""

    def __init__(self, top_k: int, seeds: Sequence[int], device: torch.device) -> None:
        self.top_k = top_k
        self.generators = [torch.Generator(device=device).manual_seed(seed % 2**64) for seed in seeds]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        kth = scores.topk(min(self.top_k, scores.shape[-1]), dim=-1).values[..., -1:]
        probs = scores.masked_fill(scores < kth, float("-inf")).float().softmax(dim=-1)
        drawn = torch.cat([torch.multinomial(p, 1, generator=g) for p, g in zip(probs, self.generators, strict=True)])
        return torch.full_like(scores, float("-inf")).scatter_(1, drawn[:, None], 0.0)


@dataclass(frozen=True)
class Sampling:
    top_k: int = 0  # 0 = greedy
    temperature: float = 1.0
    seed: int = 0


GREEDY = Sampling()


@dataclass
class Reply:
    index: int
    text: str
    new_tokens: int
    stopped_at_eos: bool


def eos_token_ids(lm: LoadedModel) -> set[int]:
    ids: set[int] = set()
    if lm.tokenizer.eos_token_id is not None:
        ids.add(int(lm.tokenizer.eos_token_id))
    configured = getattr(getattr(lm.model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(int(i) for i in configured)
    return ids


def generation_kwargs(lm: LoadedModel, eos: set[int], max_new_tokens: int, sampling: Sampling) -> dict[str, object]:
    """Every knob set explicitly, so the model's own generation_config cannot change the method."""
    kwargs: dict[str, object] = {
        "max_new_tokens": max_new_tokens,
        "num_beams": 1,
        "pad_token_id": lm.pad_token_id,
        "eos_token_id": sorted(eos) if eos else None,
        "repetition_penalty": 1.0,
        "no_repeat_ngram_size": 0,
        "use_cache": True,
    }
    # Greedy decoding either way: with top_k > 0 the processors (per batch, see generate) end in a
    # RowSampler that leaves one token possible per row, after the temperature and FiniteScores.
    kwargs.update(do_sample=False, top_k=None, temperature=None, top_p=None)
    return kwargs


def sampling_processors(sampling: Sampling, rows: Sequence[int], device: torch.device) -> LogitsProcessorList:
    """Temperature, FiniteScores, then each row's own top-k draw (seed + the row's prompt index)."""
    temperature = TemperatureLogitsWarper(sampling.temperature or 1.0)
    return LogitsProcessorList(
        [temperature, FiniteScores(), RowSampler(sampling.top_k, [sampling.seed + r for r in rows], device)]
    )


def split_reply(new_ids: list[int], eos: set[int]) -> tuple[list[int], bool]:
    """The reply's tokens up to and including the first EOS (generate pads finished rows after it)."""
    for i, token in enumerate(new_ids):
        if token in eos:
            return new_ids[: i + 1], True
    return new_ids, False


def generate(
    lm: LoadedModel,
    prompt_ids: Sequence[Sequence[int]],
    spec: AblationSpec,
    *,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    sampling: Sampling = GREEDY,
    max_batch_rows: int = 16,
) -> Iterator[Reply]:
    """Replies in prompt order, batch by batch. A batch that runs out of memory is halved and
    retried (memory.run_in_batches); one prompt that does not fit raises ResourceExhausted."""
    eos = eos_token_ids(lm)
    kwargs = generation_kwargs(lm, eos, max_new_tokens, sampling)

    def run(rows: Sequence[int]) -> list[Reply]:
        sampler = {"logits_processor": sampling_processors(sampling, rows, lm.device)} if sampling.top_k > 0 else {}
        batch = left_pad([prompt_ids[i] for i in rows], lm.pad_token_id, lm.device)
        with torch.inference_mode(), ablated(lm.model, [spec] * len(rows)):
            out = lm.model.generate(input_ids=batch.input_ids, attention_mask=batch.attention_mask, **kwargs, **sampler)
        width = batch.input_ids.shape[1]
        replies = []
        for row, index in enumerate(rows):
            reply_ids, stopped = split_reply(out[row, width:].tolist(), eos)
            text = lm.tokenizer.decode(reply_ids, skip_special_tokens=True)
            replies.append(Reply(index=index, text=text, new_tokens=len(reply_ids), stopped_at_eos=stopped))
        return replies

    stats = ForwardStats()
    for _rows, replies in run_in_batches(range(len(prompt_ids)), max_batch_rows, run, stats, lm.device):
        yield from replies
