"""Tensors on the wire: float32, little-endian, row-major bytes, cut into ~1 MiB chunks.

A `ChunkWriter` takes a tensor's rows in order, as batches finish, and hands back
(offset, bytes) pieces of exactly `chunk_bytes` (the last one shorter), so the receiver can
place every piece by its offset into a buffer of the header's byte_length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

CHUNK_BYTES = 1 << 20


def to_bytes(tensor: torch.Tensor) -> bytes:
    return bytes(_as_buffer(tensor))


def _as_buffer(tensor: torch.Tensor) -> memoryview:
    """The tensor's float32 little-endian bytes, without a copy when it is already such a CPU tensor."""
    array = tensor.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4", copy=False)
    return memoryview(array).cast("B")


@dataclass
class Piece:
    name: str
    offset: int
    data: bytes


class ChunkWriter:
    def __init__(self, name: str, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.name = name
        self.chunk_bytes = chunk_bytes
        self.offset = 0  # where the pending bytes start in the whole tensor
        self.pending = b""  # less than one chunk, carried to the next write

    def write(self, tensor: torch.Tensor) -> list[Piece]:
        """Append the next rows; return every full chunk now available.

        Chunks are cut from a memoryview of the rows (one copy per chunk, into its bytes); only a
        tail shorter than a chunk is kept, so a large block costs linear time, not quadratic."""
        data = _as_buffer(tensor)
        pieces = []
        start = 0
        if self.pending:
            need = self.chunk_bytes - len(self.pending)
            if len(data) < need:
                self.pending += bytes(data)
                return pieces
            pieces.append(self._piece(self.pending + bytes(data[:need])))
            self.pending = b""
            start = need
        while len(data) - start >= self.chunk_bytes:
            pieces.append(self._piece(bytes(data[start : start + self.chunk_bytes])))
            start += self.chunk_bytes
        self.pending = bytes(data[start:])
        return pieces

    def flush(self) -> list[Piece]:
        """The rest (call once, after the last rows)."""
        if not self.pending:
            return []
        piece, self.pending = self._piece(self.pending), b""
        return [piece]

    def _piece(self, data: bytes) -> Piece:
        piece = Piece(self.name, self.offset, data)
        self.offset += len(data)
        return piece


def from_bytes(data: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """The inverse of to_bytes (used by tests and clients written in Python)."""
    return np.frombuffer(data, dtype="<f4").reshape(shape)
