"""Prompt templates, tokenization and left padding.

A prompt becomes text by its template, text becomes token ids the way the tokenizer does
by default (BOS included where the tokenizer adds one), and a batch of id lists becomes
left-padded tensors with an attention mask and explicit position ids, so that every row's
last position is its real last token and its positions are 0..T-1 whatever the padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

TEMPLATES = ("paper", "direct", "chat")
PAPER_TEMPLATE = "## Query:{q}\n## Answer:"


class PromptError(ValueError):
    """A prompt or template that cannot be used with this tokenizer; the message says why."""


def render(query: str, template: str, tokenizer: object) -> str:
    """The text the model sees for one query."""
    if template == "paper":
        return PAPER_TEMPLATE.format(q=query)
    if template == "direct":
        return query
    if template == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise PromptError("template CHAT: this model's tokenizer has no chat template; use PAPER or DIRECT")
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": query}], tokenize=False, add_generation_prompt=True
        )
    raise PromptError(f"unknown template {template!r}; expected one of {', '.join(TEMPLATES)}")


def encode(queries: Sequence[str], template: str, tokenizer: object) -> list[list[int]]:
    """Token ids per query. A chat template writes its own special tokens, so none are added to it."""
    texts = [render(q, template, tokenizer) for q in queries]
    add_special_tokens = template != "chat"
    return [list(tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]) for text in texts]


@dataclass
class Batch:
    input_ids: torch.Tensor  # [rows, T] long
    attention_mask: torch.Tensor  # [rows, T] long, 0 on padding
    position_ids: torch.Tensor  # [rows, T] long, 0..len-1 on real tokens, 0 on padding


def left_pad(ids: Sequence[Sequence[int]], pad_token_id: int, device: torch.device | str = "cpu") -> Batch:
    width = max(len(row) for row in ids)
    input_ids = torch.full((len(ids), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, row in enumerate(ids):
        if row:
            input_ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, width - len(row) :] = 1
    position_ids = (attention_mask.cumsum(dim=-1) - 1).clamp(min=0)
    return Batch(input_ids.to(device), attention_mask.to(device), position_ids.to(device))
