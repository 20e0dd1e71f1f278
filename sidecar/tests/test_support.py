"""support.SupportReducer: each prompt's support from its first row, whatever the batches."""

from __future__ import annotations

import pytest
import torch

from sahara_sidecar.support import SupportReducer


def test_batches_across_prompts_reduce_as_one():
    torch.manual_seed(0)
    logprobs = torch.randn(3 * 4, 50).log_softmax(-1)  # 3 prompts x 4 specs
    whole = SupportReducer(4, 6).reduce(range(12), logprobs.clone())  # reduce masks its input
    parts = SupportReducer(4, 6)
    pieces = [parts.reduce(range(a, b), logprobs[a:b].clone()) for a, b in ((0, 5), (5, 6), (6, 12))]
    torch.testing.assert_close(torch.cat(pieces), whole, rtol=0, atol=0)
    for n in range(3):
        ids = logprobs[4 * n].topk(6).indices
        rows = logprobs[4 * n : 4 * n + 4]
        mask = torch.ones(50, dtype=torch.bool)
        mask[ids] = False
        torch.testing.assert_close(whole[4 * n : 4 * n + 4, :6], rows[:, ids], rtol=0, atol=0)
        torch.testing.assert_close(whole[4 * n : 4 * n + 4, 6], rows[:, mask].logsumexp(-1))
    assert whole[0, :6].diff().le(0).all()  # most likely first


def test_a_prompt_must_start_with_its_first_row():
    with pytest.raises(ValueError, match="row 5: its prompt's first row"):
        SupportReducer(4, 3).reduce(range(5, 8), torch.zeros(3, 10))
