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
    return tensor.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4", copy=False).tobytes()


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
        self.pending = bytearray()

    def write(self, tensor: torch.Tensor) -> list[Piece]:
        """Append the next rows; return every full chunk now available."""
        self.pending += to_bytes(tensor)
        pieces = []
        while len(self.pending) >= self.chunk_bytes:
            pieces.append(self._take(self.chunk_bytes))
        return pieces

    def flush(self) -> list[Piece]:
        """The rest (call once, after the last rows)."""
        return [self._take(len(self.pending))] if self.pending else []

    def _take(self, size: int) -> Piece:
        piece = Piece(self.name, self.offset, bytes(self.pending[:size]))
        del self.pending[:size]
        self.offset += size
        return piece


def from_bytes(data: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """The inverse of to_bytes (used by tests and clients written in Python)."""
    return np.frombuffer(data, dtype="<f4").reshape(shape)
