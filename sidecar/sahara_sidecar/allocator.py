"""glibc malloc settings for a process that allocates and frees the same large tensors over and over.

By default glibc serves an allocation above its mmap threshold (128 KiB, raised dynamically up to
the size of freed mmapped blocks) with a fresh mmap, and returns the top of the heap to the kernel
once more than 128 KiB of it is free. A batched forward on the CPU allocates activation tensors of
0.1-10 MiB per operation and frees them at once; with the defaults many come back as new pages,
which the kernel zeroes on first touch (a page fault per 4 KiB). On the organism's fast Ships scan
(2-core CPU) that was ~180k minor faults and ~0.8 s of system time per scan, ~20% of its wall time;
with the settings below ~0 faults after the first batch (the numbers are in docs/PERFORMANCE.md).

The settings: blocks below 32 MiB (glibc's largest mmap threshold) come from the heap; up to
256 MiB of freed heap is kept for reuse; the heap grows in 64 MiB steps. A process serving a model
holds far more than that anyway. Other C libraries (musl, macOS) are left as they are.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameter numbers from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

MIB = 1 << 20
SETTINGS = {M_MMAP_THRESHOLD: 32 * MIB, M_TRIM_THRESHOLD: 256 * MIB, M_TOP_PAD: 64 * MIB}


def glibc() -> ctypes.CDLL | None:
    """The process's C library if it is glibc (it has gnu_get_libc_version), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") else None


def keep_freed_memory() -> bool:
    """Apply SETTINGS to glibc malloc; True when every setting was accepted, False elsewhere."""
    libc = glibc()
    if libc is None:
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return all(libc.mallopt(parameter, value) == 1 for parameter, value in SETTINGS.items())
