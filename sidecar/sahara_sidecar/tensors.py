"""Tensors on the wire: float32, little-endian, row-major bytes, cut into ~1 MiB chunks.

A `ChunkWriter` takes a tensor's rows in order, as batches finish, and hands back chunks of
exactly `chunk_bytes` (the last one shorter), each already encoded as the ForwardResponse that
carries it with its offset, so the receiver can place every chunk into a buffer of the header's
byte_length. The server sends those bytes as they are (`serialize_response`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from google.protobuf.message import Message

CHUNK_BYTES = 1 << 20


def to_bytes(tensor: torch.Tensor) -> bytes:
    return bytes(_as_buffer(tensor))


def _as_buffer(tensor: torch.Tensor) -> memoryview:
    """The tensor's float32 little-endian bytes, without a copy when it is already such a CPU tensor."""
    array = tensor.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4", copy=False)
    return memoryview(array).cast("B")


# (field number << 3) | wire type: 2 = length-delimited, 0 = varint
_TAG_RESPONSE_CHUNK = bytes([2 << 3 | 2])  # ForwardResponse.chunk
_TAG_NAME, _TAG_OFFSET, _TAG_DATA = bytes([1 << 3 | 2]), bytes([2 << 3 | 0]), bytes([3 << 3 | 2])  # TensorChunk


def encode_chunk_response(name: str, offset: int, *parts: bytes | bytearray | memoryview) -> bytes:
    """The wire bytes of ForwardResponse{chunk: TensorChunk{name, offset, data}}, data the parts joined.

    Written by hand so that the tensor's bytes are copied once, into the message: building the
    protobuf objects and serialising them copies them three times (measured 0.4 GB/s for the
    three, the whole path from the tensor to gRPC). Field numbers and the proto3 rule that
    defaults are left out follow proto/sahara/v1/sahara.proto; a test checks these bytes
    against protobuf's own encoding."""
    size = sum(len(part) for part in parts)
    chunk = bytearray()
    if name:
        raw = name.encode("utf-8")
        chunk += _TAG_NAME + _varint(len(raw)) + raw
    if offset:
        chunk += _TAG_OFFSET + _varint(offset)
    if size:
        chunk += _TAG_DATA + _varint(size)
    head = _TAG_RESPONSE_CHUNK + _varint(len(chunk) + size) + chunk
    return b"".join((head, *parts))


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class ChunkWriter:
    """Cuts a tensor, written a block of rows at a time, into encoded chunk responses."""

    def __init__(self, name: str, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.name = name
        self.chunk_bytes = chunk_bytes
        self.offset = 0  # where the pending bytes start in the whole tensor
        self.pending = bytearray()  # less than one chunk, carried to the next write

    def write(self, tensor: torch.Tensor) -> Iterator[bytes]:
        """Append the next rows; yield every full chunk now available, each an encoded ForwardResponse.

        A generator, consumed before the next write: gRPC sends each chunk before asking for the
        next, so a block's chunks are never all in memory beside the block. Chunks are cut from a
        memoryview of the rows and copied once, into their message; only a tail shorter than a
        chunk is kept (in a bytearray: small writes append in amortised constant time)."""
        data = _as_buffer(tensor)
        start = 0
        if self.pending:
            need = self.chunk_bytes - len(self.pending)
            if len(data) < need:
                self.pending += data
                return
            response = self._response(self.pending, data[:need])
            self.pending = bytearray()
            start = need
            yield response
        while len(data) - start >= self.chunk_bytes:
            response = self._response(data[start : start + self.chunk_bytes])
            start += self.chunk_bytes
            yield response
        self.pending = bytearray(data[start:])

    def flush(self) -> Iterator[bytes]:
        """The rest (call once, after the last rows)."""
        if self.pending:
            response, self.pending = self._response(self.pending), bytearray()
            yield response

    def _response(self, *parts: bytes | bytearray | memoryview) -> bytes:
        response = encode_chunk_response(self.name, self.offset, *parts)
        self.offset += sum(len(part) for part in parts)
        return response


def serialize_response(message: Message | bytes) -> bytes:
    """gRPC's response serializer for streams that mix protobuf messages with encoded chunks."""
    return message if isinstance(message, bytes) else message.SerializeToString()


def from_bytes(data: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """The inverse of to_bytes (used by tests and clients written in Python)."""
    return np.frombuffer(data, dtype="<f4").reshape(shape)
