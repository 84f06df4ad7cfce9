"""Keep freed CPU memory in the process heap, so large tensors are reused without page faults (glibc only).

Why: glibc serves every allocation above its mmap threshold (adjusted at run time, but never past 32 MiB) with a
fresh ``mmap`` and unmaps it on free, and it returns the heap's free top to the kernel past its trim threshold. A
forward pass whose intermediates exceed 32 MiB (LeViT-384's first stem map at batch 16, 38.5 MB; T2T-ViT's token
layers) then faults in every page of them on every call. ONNX Runtime and OpenVINO keep their own arenas and never
pay this; PyTorch eager and this project's ops allocate through torch's CPU allocator, i.e. malloc.

Measured on AMD EPYC Zen 5 (avx512), 1 thread, batch 16, medians (thread CPU time for the op, wall for models):
the stem's first convolution 3→48 at 224² 23.1-23.9 → 8.3-9.2 ms; LeViT-384 forward 390 → 375 ms (1.04×),
T2T-ViT-14 925 → 871 ms (1.06×); LeViT-128S unchanged (its largest tensor is 12.8 MB, already reused by glibc).

Limits: the first few repeats of a large allocation may still fault fresh pages in before the heap settles (seen
here: two rounds in a row, within the first four), the kernel may reclaim idle freed pages under memory pressure,
and threads other than the main one allocate from heaps of at most 64 MiB, so their larger tensors are still
mmapped.

The cost: memory a forward pass freed stays mapped to this process (RSS keeps its peak) instead of going back to
the OS. That is what a serving process wants, and what an arena allocator (jemalloc, tcmalloc; PyTorch's tuning
guide recommends them for this reason) gives; it is process-wide, so it is never done implicitly: call
:func:`keep_freed_memory` (``levit-kernels bench`` does, for every candidate in its process alike).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

DEFAULT_MMAP_THRESHOLD = 1 << 30  # allocations up to 1 GiB come from the heap (and are reused there)
DEFAULT_TRIM_THRESHOLD = (1 << 31) - 1  # mallopt takes an int: the heap's free top is kept up to 2 GiB


def _mallopt():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not hasattr(libc, "gnu_get_libc_version"):  # glibc only (musl has a mallopt that does nothing)
        return None
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt


def keep_freed_memory(mmap_threshold: int = DEFAULT_MMAP_THRESHOLD,
                      trim_threshold: int = DEFAULT_TRIM_THRESHOLD) -> bool:
    """Raise glibc's mmap and trim thresholds for this process: allocations up to ``mmap_threshold`` bytes come from
    the heap, and up to ``trim_threshold`` bytes of free heap stay mapped, so a repeated forward pass reuses its
    memory instead of faulting it in again. Returns True when both were set, False where this is not glibc (nothing
    changed). Raises ValueError for thresholds outside 1 B … 2 GiB − 1 (mallopt's int range)."""
    for name, value in (("mmap_threshold", mmap_threshold), ("trim_threshold", trim_threshold)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 1 << 31:
            raise ValueError(f"keep_freed_memory: {name} must be an int of bytes in [1, 2**31 - 1], got {value!r}")
    mallopt = _mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))
