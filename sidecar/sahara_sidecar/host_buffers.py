"""Host memory for the fast engine's block results, reused across blocks and requests.

A block's results (up to fast.OUTPUT_BUFFER_BYTES) are gathered into one host tensor before they
are streamed. A fresh tensor that large comes from a fresh mmap (glibc serves every allocation
above 32 MiB so, allocator.py), whose pages the kernel maps and zeroes on their first write:
measured on the project's 2-core host, scattering 166 MB of log-probs into a fresh tensor took
0.25 s, into one written before 0.009 s, longer than the forward itself on a model with little
compute per vocabulary entry. On a GPU host that time is spent on the model thread, with the GPU
idle.

The engine takes its block buffers here; the server gives each back, once, when it has copied the
block into chunk messages and reads it no more. Only memory this pool lent, and still lent, is
taken back (a tensor from another engine, given back the same way, is ignored). No reference is
kept to lent memory: a block that is never given back is freed, and forgotten. Thread-safe (the
engine runs on the model thread, the server on its own).
"""

from __future__ import annotations

import itertools
import threading
import weakref

import torch


class HostBuffers:
    def __init__(self, max_free_bytes: int) -> None:
        self.max_free_bytes = max_free_bytes
        self._free: list[torch.Tensor] = []  # flat float32 buffers, oldest first
        self._lent: dict[int, int] = {}  # data pointer of a lent buffer -> the loan's number
        self._loans = itertools.count()
        # Re-entrant: a loan's finalizer may run on a thread inside take or give.
        self._lock = threading.RLock()

    def take(self, rows: int, width: int) -> torch.Tensor:
        """An uninitialised [rows, width] float32 CPU tensor: the smallest free buffer that holds it and
        is at most twice its size (a larger one would hold memory a small block does not need), else a
        new one."""
        numel = rows * width
        with self._lock:
            fits = [i for i, buffer in enumerate(self._free) if numel <= buffer.numel() <= 2 * numel]
            flat = self._free.pop(min(fits, key=lambda i: self._free[i].numel())) if fits else torch.empty(numel)
            loan = self._lent[flat.data_ptr()] = next(self._loans)
        block = flat[:numel].view(rows, width)
        weakref.finalize(block, self._forget, flat.data_ptr(), loan)  # dropped without a give
        return block

    def give(self, tensor: torch.Tensor) -> None:
        """`tensor` (from take) is no longer read: its buffer goes back to the free list; the oldest
        free ones are dropped while they hold more than max_free_bytes."""
        with self._lock:
            storage = tensor.untyped_storage()
            if self._lent.pop(storage.data_ptr(), None) is None:
                return
            self._free.append(torch.empty(0).set_(storage))
            while self.held_bytes() > self.max_free_bytes:
                self._free.pop(0)

    def _forget(self, address: int, loan: int) -> None:
        with self._lock:
            if self._lent.get(address) == loan:
                del self._lent[address]

    def held_bytes(self) -> int:
        """Bytes in free buffers."""
        return sum(buffer.numel() * buffer.element_size() for buffer in self._free)
