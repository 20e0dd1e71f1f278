"""Log-probs on a support set (ForwardRequest.logprob_support): K tokens and the rest of the mass.

For each prompt the support is the K tokens most likely in its first spec's row (the clean model,
the way Ships asks), and every row of that prompt is reduced to those K log-probs and the log of
the mass of all other tokens, K + 1 outcomes. A KL over them is a lower bound of the
full-vocabulary KL (merging outcomes never increases a KL: the log-sum inequality), equal to it
when the ablated model moves no mass among the tokens outside the support; the gap is at most the
KL between the two distributions restricted to those tokens, weighted by their mass, which is
small when the support holds nearly all of the clean mass. What goes over the wire and into the
CLI's KL is (K + 1) / vocab of the full tensor: 257 of 32000 floats per row for K = 256.
"""

from __future__ import annotations

import torch

ROWS_PER_SLICE = 64


class SupportReducer:
    """Reduces a Forward's log-prob rows, given in row order (r = n*M + m), batch by batch."""

    def __init__(self, specs_per_prompt: int, k: int) -> None:
        self.specs_per_prompt = specs_per_prompt
        self.k = k
        self.prompt = -1  # the prompt whose support is held
        self.ids = torch.empty(0, dtype=torch.long)

    @torch.inference_mode()  # engines may hand over inference tensors, which change in place only there
    def reduce(self, rows: range, logprobs: torch.Tensor) -> torch.Tensor:
        """[len(rows), vocab] log-probs -> [len(rows), K + 1]: the support's, then the rest's.
        Overwrites the support's entries of `logprobs` (the caller's own copy, read no more)."""
        m = self.specs_per_prompt
        first, last = rows.start // m, (rows.stop - 1) // m
        supports = []  # one row of token ids per prompt of the batch
        for prompt in range(first, last + 1):
            if prompt != self.prompt:
                first_row = prompt * m
                if first_row < rows.start:
                    raise ValueError(f"row {rows.start}: its prompt's first row (spec 0) was not seen first")
                self.prompt, self.ids = prompt, logprobs[first_row - rows.start].topk(self.k).indices
            supports.append(self.ids)
        index = torch.stack(supports)[torch.arange(rows.start, rows.stop) // m - first]
        out = torch.empty(len(rows), self.k + 1)
        out[:, : self.k] = logprobs.gather(1, index)
        # The rest as a log-sum-exp of the other tokens, not log(1 - support mass): that difference
        # loses a small rest to float32 rounding. Slices of rows keep the temporaries small (heap
        # memory, not fresh pages: host_buffers.py); the support entries are masked in place.
        for start in range(0, len(rows), ROWS_PER_SLICE):
            part = logprobs[start : start + ROWS_PER_SLICE]
            part.scatter_(1, index[start : start + ROWS_PER_SLICE], float("-inf"))
            out[start : start + ROWS_PER_SLICE, self.k] = part.logsumexp(dim=1)
        return out
