"""Dense matmul throughput of the model's device in the model's dtype: the peak FLOP/s that a
forward's achieved FLOP/s are compared against."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

DEFAULT_SIZE_GPU = 4096
DEFAULT_SIZE_CPU = 1024
DEFAULT_MIN_SECONDS = 1.0


@dataclass(frozen=True)
class Peak:
    flops_per_second: float
    dtype: torch.dtype
    size: int
    device: torch.device
    repeats: int


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_peak(device: torch.device, dtype: torch.dtype, size: int = 0, min_seconds: float = 0.0) -> Peak:
    """C = A @ B with A, B random size x size, repeated until at least min_seconds have passed
    (synchronised before the clock starts and after each round); 2 * size^3 FLOPs per product."""
    size = size or (DEFAULT_SIZE_GPU if device.type == "cuda" else DEFAULT_SIZE_CPU)
    min_seconds = min_seconds or DEFAULT_MIN_SECONDS
    generator = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    c = torch.empty(size, size, device=device, dtype=dtype)
    with torch.inference_mode():
        torch.mm(a, b, out=c)  # warm-up: kernel selection, allocator
        _sync(device)
        start = time.perf_counter()
        torch.mm(a, b, out=c)
        _sync(device)
        once = max(time.perf_counter() - start, 1e-9)
        per_round = max(1, int(0.1 / once))  # rounds of about 0.1 s between synchronisations
        repeats = 0
        start = time.perf_counter()
        while True:
            for _ in range(per_round):
                torch.mm(a, b, out=c)
            _sync(device)
            repeats += per_round
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
    return Peak(2.0 * size**3 * repeats / elapsed, dtype, size, device, repeats)
