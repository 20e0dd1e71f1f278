"""Prompts, padding, the batched forward, chunking and generation, in process."""

from __future__ import annotations

import pytest
import torch

from sahara_sidecar.ablation import AblationSpec
from sahara_sidecar.forward import forward_rows
from sahara_sidecar.generate import Sampling, eos_token_ids, generate
from sahara_sidecar.host_buffers import HostBuffers
from sahara_sidecar.prompts import PromptError, encode, left_pad, render
from sahara_sidecar.protos import sahara_pb2
from sahara_sidecar.tensors import ChunkWriter, encode_chunk_response, from_bytes, serialize_response

PROMPTS = ["Hi", "How do I bake bread at home?", "Tell me how to build a birdhouse from scrap wood, step by step."]
SPECS = [AblationSpec(), AblationSpec(((0, 1), (2, 3)), "ua", 1e-5), AblationSpec(((1, 0),), "sc", 0.0)]


def test_templates(tiny_lms):
    llama, qwen = tiny_lms["llama"], tiny_lms["qwen2"]
    assert render("q?", "paper", qwen.tokenizer) == "## Query:q?\n## Answer:"
    assert render("q?", "direct", qwen.tokenizer) == "q?"
    assert render("q?", "chat", llama.tokenizer) == "<s><|user|>q?\n<|assistant|>"
    with pytest.raises(PromptError, match="no chat template"):
        render("q?", "chat", qwen.tokenizer)
    paper, chat = encode(["q?"], "paper", llama.tokenizer)[0], encode(["q?"], "chat", llama.tokenizer)[0]
    bos = llama.tokenizer.bos_token_id
    assert paper[0] == bos and paper[1] != bos, "BOS is added once, as the tokenizer does"
    assert chat[0] == bos and chat[1] != bos, "the chat template's BOS is not doubled"


def test_left_pad_positions():
    batch = left_pad([[5, 6, 7], [8]], pad_token_id=0)
    assert batch.input_ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert batch.position_ids.tolist() == [[0, 1, 2], [0, 0, 0]]


def single_row(lm, ids, spec):
    """The reference: one unpadded prompt, one spec, straight through the model."""
    from sahara_sidecar.ablation import ablated

    with torch.inference_mode(), ablated(lm.model, [spec]):
        out = lm.model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    return out.logits[0, -1].float().log_softmax(-1), out.hidden_states[-1][0, -1].float()


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral"])
def test_padded_batches_equal_unpadded_single_prompts(tiny_lms, family):
    lm = tiny_lms[family]
    ids = encode(PROMPTS, "paper", lm.tokenizer)
    assert len({len(row) for row in ids}) == len(PROMPTS), "prompts must differ in length to test padding"
    for max_rows in (4, 9):
        results = list(forward_rows(lm, ids, SPECS, want_logprobs=True, want_hidden=True, max_batch_rows=max_rows))
        assert [r.rows.start for r in results] == list(range(0, 9, max_rows))
        logprobs = torch.cat([r.logprobs for r in results]).view(3, 3, -1)
        hidden = torch.cat([r.hidden for r in results]).view(3, 3, -1)
        assert logprobs.dtype == hidden.dtype == torch.float32
        for n in range(3):
            for m, spec in enumerate(SPECS):
                ref_logprobs, ref_hidden = single_row(lm, ids[n], spec)
                torch.testing.assert_close(logprobs[n, m], ref_logprobs, atol=1e-5, rtol=0)
                torch.testing.assert_close(hidden[n, m], ref_hidden, atol=1e-5, rtol=0)


def chunks_of(responses: list[bytes]) -> list[sahara_pb2.TensorChunk]:
    """The ChunkWriter's encoded responses, parsed by protobuf itself."""
    parsed = [sahara_pb2.ForwardResponse.FromString(raw) for raw in responses]
    assert all(message.WhichOneof("part") == "chunk" for message in parsed)
    return [message.chunk for message in parsed]


def test_chunk_writer_reassembles():
    tensor = torch.randn(7, 33)
    writer = ChunkWriter("t", chunk_bytes=100)
    pieces = chunks_of([*writer.write(tensor[:3]), *writer.write(tensor[3:]), *writer.flush()])
    assert all(len(p.data) == 100 for p in pieces[:-1]) and 0 < len(pieces[-1].data) <= 100
    assert {p.name for p in pieces} == {"t"}
    buffer = bytearray(7 * 33 * 4)
    for piece in pieces:
        buffer[piece.offset : piece.offset + len(piece.data)] = piece.data
    assert torch.equal(torch.from_numpy(from_bytes(bytes(buffer), (7, 33)).copy()), tensor)
    # writes smaller than a chunk, exactly a chunk, and many chunks at once
    for sizes in ((1, 1, 1, 4), (5, 2), (7,)):
        writer = ChunkWriter("t", chunk_bytes=132)
        responses, at = [], 0
        for n in sizes:
            responses += writer.write(tensor[at : at + n])
            at += n
        pieces = chunks_of([*responses, *writer.flush()])
        assert [p.offset for p in pieces] == list(range(0, 7 * 33 * 4, 132))
        assert b"".join(p.data for p in pieces) == tensor.numpy().astype("<f4").tobytes()
    # chunks are cut as they are asked for: one block's chunks are never all held at once
    writer = ChunkWriter("t", chunk_bytes=100)
    chunks = writer.write(tensor)
    next(chunks)
    assert writer.offset == 100


@pytest.mark.parametrize(
    ("name", "offset", "size"),
    [("logprobs", 0, 1 << 20), ("hidden", 1 << 20, 7), ("é", 2**40 + 3, 1), ("x", 127, 128), ("", 0, 0), ("t", 5, 0)],
)
def test_encoded_chunk_is_protobufs_own_encoding(name, offset, size):
    """The hand-written encoding is byte for byte what protobuf writes (defaults left out, varints
    of every length), its data given in one part or several."""
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    expected = sahara_pb2.ForwardResponse(
        chunk=sahara_pb2.TensorChunk(name=name, offset=offset, data=data)
    ).SerializeToString()
    assert encode_chunk_response(name, offset, data) == expected
    assert encode_chunk_response(name, offset, data[:3], memoryview(data)[3:]) == expected


def test_serialize_response_passes_encoded_chunks_through():
    header = sahara_pb2.ForwardResponse(header=sahara_pb2.ForwardHeader(prompt_tokens=[3]))
    assert serialize_response(header) == header.SerializeToString()
    encoded = encode_chunk_response("t", 8, b"abcd")
    assert serialize_response(encoded) is encoded


def test_host_buffers_lend_reuse_and_forget():
    pool = HostBuffers(max_free_bytes=1000 * 4)
    block = pool.take(10, 30)
    block.fill_(1.0)
    address = block.data_ptr()
    pool.give(block)
    assert pool.held_bytes() == 300 * 4
    again = pool.take(10, 20)  # smaller, at least half: the same memory
    assert again.data_ptr() == address and again.shape == (10, 20) and pool.held_bytes() == 0
    assert pool.take(10, 10).data_ptr() != address  # lent out: not handed out twice
    pool.give(again)
    assert pool.take(5, 10).data_ptr() != address  # under half the free buffer: a new one
    assert pool.take(20, 30).data_ptr() != address  # larger than any free buffer
    pool.give(torch.empty(40, 30))  # not lent by the pool: ignored
    assert pool.held_bytes() == 300 * 4
    big = [pool.take(25, 40) for _ in range(3)]
    for tensor in big:
        pool.give(tensor)
    assert pool.held_bytes() <= 1000 * 4  # the oldest dropped over the cap
    pool.give(big[-1])  # a second give: ignored
    assert pool.held_bytes() <= 1000 * 4


def test_generate_greedy_is_deterministic_and_batch_independent(tiny_lms):
    lm = tiny_lms["qwen2"]
    ids = encode(PROMPTS, "paper", lm.tokenizer)
    first = list(generate(lm, ids, AblationSpec(), max_new_tokens=8, max_batch_rows=3))
    again = list(generate(lm, ids, AblationSpec(), max_new_tokens=8, max_batch_rows=1))
    assert [r.index for r in first] == [0, 1, 2]
    assert [(r.text, r.new_tokens) for r in first] == [(r.text, r.new_tokens) for r in again]
    assert all(r.new_tokens == 8 or r.stopped_at_eos for r in first)


@pytest.mark.parametrize("family", ["llama", "gemma3", "phi3"])
def test_ablated_generation_equals_step_by_step_forwards(tiny_lms, family):
    """Decoding with the KV cache (one position per step: Gemma 3's q_norm sees [rows, H, 1, d_h],
    Phi-3's fused qkv_proj [rows, 1, (H + 2*KV)*d_h]) ablates as full forwards without a cache do."""
    from sahara_sidecar.ablation import ablated

    lm = tiny_lms[family]
    spec = AblationSpec(((0, 1), (1, 2)), "ua", 1e-5)
    ids = encode(PROMPTS[:1], "paper", lm.tokenizer)[0]
    (reply,) = generate(lm, [ids], spec, max_new_tokens=6)
    sequence, eos = list(ids), eos_token_ids(lm)
    with torch.inference_mode(), ablated(lm.model, [spec]):
        for _ in range(6):
            token = int(lm.model(input_ids=torch.tensor([sequence]), use_cache=False).logits[0, -1].argmax())
            if token in eos:
                break
            sequence.append(token)
    assert reply.new_tokens == len(sequence) - len(ids) > 0
    assert reply.text == lm.tokenizer.decode(sequence[len(ids) :], skip_special_tokens=True)


def test_generate_sampling_is_seeded(tiny_lms):
    lm = tiny_lms["llama"]
    ids = encode(PROMPTS, "paper", lm.tokenizer)
    sample = Sampling(top_k=5, temperature=1.0, seed=7)
    a = [r.text for r in generate(lm, ids, AblationSpec(), max_new_tokens=8, sampling=sample)]
    b = [r.text for r in generate(lm, ids, AblationSpec(), max_new_tokens=8, sampling=sample)]
    assert a == b
    other = [r.text for r in generate(lm, ids, AblationSpec(), max_new_tokens=8, sampling=Sampling(5, 1.0, 8))]
    assert other != a  # it does sample


def test_a_sampled_reply_does_not_depend_on_its_batch(tiny_lms):
    """Each prompt draws from its own generator (seed + its index): the same replies one prompt
    per batch, and for a request that starts later in the list with the seed moved on as much."""
    lm = tiny_lms["llama"]
    ids = encode(PROMPTS, "paper", lm.tokenizer)
    sample = Sampling(top_k=5, temperature=1.0, seed=7)
    together = [r.text for r in generate(lm, ids, AblationSpec(), max_new_tokens=8, sampling=sample)]
    alone = [r.text for r in generate(lm, ids, AblationSpec(), max_new_tokens=8, sampling=sample, max_batch_rows=1)]
    assert alone == together
    later = Sampling(top_k=5, temperature=1.0, seed=7 + 2)
    assert [r.text for r in generate(lm, ids[2:], AblationSpec(), max_new_tokens=8, sampling=later)] == together[2:]


def test_structure_facts(tiny_lms):
    from sahara_sidecar import loading

    assert loading.queries_normalised(tiny_lms["qwen3"].model)
    assert not loading.queries_normalised(tiny_lms["qwen2"].model)
    assert loading.query_bias(tiny_lms["qwen2"].model)
    assert not loading.query_bias(tiny_lms["llama"].model)
    assert not loading.query_bias(tiny_lms["phi3"].model), "fused qkv_proj without a bias"
    assert not loading.output_bias(tiny_lms["qwen2"].model)


def test_bfloat16_model_returns_float32(tiny_dirs, tiny_lms):
    from sahara_sidecar import loading

    lm16 = loading.load(str(tiny_dirs["llama"]), device="cpu", dtype="bfloat16")
    assert lm16.dtype == torch.bfloat16
    ids = encode(PROMPTS, "paper", lm16.tokenizer)
    (low,) = forward_rows(lm16, ids, SPECS[:2], want_logprobs=True, want_hidden=True, max_batch_rows=6)
    (ref,) = forward_rows(tiny_lms["llama"], ids, SPECS[:2], want_logprobs=True, want_hidden=True, max_batch_rows=6)
    assert low.logprobs.dtype == low.hidden.dtype == torch.float32
    assert torch.isfinite(low.logprobs).all()
    probs, ref_probs = low.logprobs.exp(), ref.logprobs.exp()
    assert (probs - ref_probs).abs().sum(-1).max() < 0.1, "bf16 and fp32 next-token distributions are close"
