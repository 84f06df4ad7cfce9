"""The machine's peak throughput, measured in the run, so results can say what fraction of it a kernel reaches.

CPU: the extension's FMA-bound loop (``levit_kernels._C.fma_peak_gflops(threads)``) when it has one — the true
arithmetic peak. Without it, a large torch matmul, reported as "reference matmul throughput": a practical ceiling
set by torch's BLAS, not the FMA peak (on AMD, MKL runs its AVX2 path and reaches ~40% of the AVX-512 peak).
GPU: a large matmul in the run's dtype (bf16 tensor cores for the paper protocol).
"""
from __future__ import annotations

import statistics
import time

import torch

from levit_kernels.bench import timing


def _cpu_fma_hook():
    try:
        from levit_kernels import _C
    except ImportError:
        return None
    return getattr(_C, "fma_peak_gflops", None)


def _matmul_gflops(n: int, dtype: torch.dtype, device: str, reps: int) -> float:
    """GFLOP/s of an n×n×n matmul: median of ``reps`` CPU calls, or about ``reps`` × 10 ms of GPU calls."""
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    flops = 2.0 * n ** 3
    if device == "cuda":
        seconds = timing.cuda_time(lambda: torch.mm(a, b), budget_ms=10.0 * reps)
    else:
        torch.mm(a, b)  # warm-up: BLAS thread pool and packing buffers
        samples = []
        for _ in range(reps):
            start = time.perf_counter()
            torch.mm(a, b)
            samples.append(time.perf_counter() - start)
        seconds = statistics.median(samples)
    return flops / seconds / 1e9


def measure_peak(device: str, dtype: torch.dtype, threads: int, quick: bool = False) -> dict:
    """{"gflops", "method", "label"} for ``device`` ("cpu"/"cuda") at ``threads`` CPU threads and ``dtype``."""
    dtype_name = str(dtype).replace("torch.", "")
    if device == "cuda":
        n = 2048 if quick else 8192
        gflops = _matmul_gflops(n, dtype, "cuda", reps=5 if quick else 50)
        return {"gflops": gflops, "method": "matmul",
                "label": f"torch.mm {dtype_name} {n}³ on {torch.cuda.get_device_name(0)}"}
    with timing.torch_threads(threads):
        hook = _cpu_fma_hook()
        if hook is not None and dtype == torch.float32:
            return {"gflops": float(hook(threads)), "method": "fma-loop",
                    "label": f"FMA-bound loop, fp32, {threads} thread(s) (levit_kernels._C.fma_peak_gflops)"}
        n = 256 if quick else 1024
        gflops = _matmul_gflops(n, dtype, "cpu", reps=3 if quick else 15)
    return {"gflops": gflops, "method": "matmul",
            "label": f"reference matmul throughput (torch.mm {dtype_name} {n}³, {threads} thread(s); "
                     f"not the FMA peak: the extension has no fma_peak_gflops)"}
