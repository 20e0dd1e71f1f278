"""Forward overrides (module_patches): restored afterwards, and MLPs run in row slices with the same results."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sahara_sidecar import module_patches
from sahara_sidecar.ablation import AblationSpec, decoder_layers
from sahara_sidecar.engines import run_forward
from sahara_sidecar.module_patches import forwards_replaced, in_row_slices, mlps_in_chunks
from sahara_sidecar.prompts import encode

PROMPTS = ["Hi", "How do I bake bread at home?", "Tell me how to build a birdhouse from scrap wood, step by step."]


class Counting(nn.Module):
    """A position-wise MLP that counts its calls and the rows of each."""

    def __init__(self, returns_tuple: bool = False) -> None:
        super().__init__()
        self.up = nn.Linear(8, 32)
        self.down = nn.Linear(32, 8)
        self.returns_tuple = returns_tuple
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor):
        self.calls.append(x.shape[0])
        out = self.down(torch.relu(self.up(x)))
        return (out, out.sum()) if self.returns_tuple else out


def test_row_slices_cover_every_row_once():
    torch.manual_seed(0)
    mlp = Counting()
    x = torch.randn(7, 3, 8)
    whole = mlp(x)
    mlp.calls.clear()
    sliced = in_row_slices(mlp.forward, tokens=7)(x)  # 7 // 3 = 2 rows per slice
    assert mlp.calls == [2, 2, 2, 1]
    torch.testing.assert_close(sliced, whole)
    mlp.calls.clear()
    in_row_slices(mlp.forward, tokens=21)(x)
    assert mlp.calls == [7], "a batch within the slice size runs whole"


def test_row_slices_run_whole_what_is_not_one_tensor_of_the_input_shape():
    mlp = Counting(returns_tuple=True)
    x = torch.randn(6, 2, 8)
    out = in_row_slices(mlp.forward, tokens=4)(x)
    assert mlp.calls == [2, 6]  # the first slice shows a tuple comes back, then the whole batch
    assert isinstance(out, tuple) and out[0].shape == x.shape


def test_forwards_replaced_restores_class_and_instance_forwards_also_on_error():
    plain, wrapped = Counting(), Counting()
    instance_forward = wrapped.forward
    wrapped.forward = instance_forward  # an instance-level forward, as accelerate installs
    with pytest.raises(RuntimeError), forwards_replaced([plain, wrapped], [lambda x: x, lambda x: x]):
        assert plain(torch.ones(1, 1, 8)).sum() == 8
        raise RuntimeError("boom")
    assert "forward" not in plain.__dict__
    assert wrapped.__dict__["forward"] is instance_forward


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_fast_engine_with_mlps_in_small_slices_agrees(tiny_lms, monkeypatch, family):
    lm = tiny_lms[family]
    ids = encode(PROMPTS, "paper", lm.tokenizer)
    specs = [AblationSpec(), *(AblationSpec(((layer, head),), "ua", 1e-5) for layer in range(3) for head in range(4))]

    def scan() -> torch.Tensor:
        batches = run_forward(lm, ids, specs, engine="fast", want_logprobs=True, want_hidden=False)
        return torch.cat([batch.logprobs for batch in batches])

    tokens: list[int] = []  # rows x positions of each down_proj call: one per MLP slice
    handles = [
        layer.mlp.down_proj.register_forward_pre_hook(lambda _m, args: tokens.append(args[0].shape[:-1].numel()))
        for layer in decoder_layers(lm.model)
    ]
    try:
        whole = scan()
        whole_tokens = list(tokens)
        tokens.clear()
        slice_tokens = 2 * max(len(row) for row in ids)  # two rows of the longest bucket
        monkeypatch.setitem(module_patches.MLP_CHUNK_TOKENS, "cpu", slice_tokens)
        sliced = scan()
    finally:
        for handle in handles:
            handle.remove()
    assert max(whole_tokens) > slice_tokens >= max(tokens) and len(tokens) > len(whole_tokens)
    assert sum(tokens) == sum(whole_tokens), "every token of every MLP call, once"
    torch.testing.assert_close(sliced, whole, atol=1e-6, rtol=0)


def test_mlps_in_chunks_slices_only_on_devices_with_a_size(tiny_lms):
    lm = tiny_lms["llama"]
    layers = decoder_layers(lm.model)
    with mlps_in_chunks(layers, torch.device("cpu")):
        assert all("forward" in layer.mlp.__dict__ for layer in layers)
    assert not any("forward" in layer.mlp.__dict__ for layer in layers)
    with mlps_in_chunks(layers, torch.device("meta")):
        assert not any("forward" in layer.mlp.__dict__ for layer in layers)
