"""The machine's peak throughput, measured in the run, so results can say what fraction of it a kernel reaches.

CPU: the extension's FMA-bound loop (``levit_kernels._C.fma_peak_gflops(threads)``) when it has one — the true
arithmetic peak. Without it, a large torch matmul, reported as "reference matmul throughput": a practical ceiling
set by torch's BLAS, not the FMA peak (on AMD, MKL runs its AVX2 path and reaches ~40% of the AVX-512 peak).
GPU: a large matmul in the run's dtype (bf16 tensor cores for the paper protocol).
"""
from __future__ import annotations

import torch

from levit_kernels.bench import timing


def _cpu_fma_hook():
    try:
        from levit_kernels import _C
    except ImportError:
        return None
    return getattr(_C, "fma_peak_gflops", None)


def _matmul_gflops(n: int, dtype: torch.dtype, device: str, threads: int, quick: bool) -> float:
    """GFLOP/s of an n×n×n matmul, timed like the candidates (median; CPU time at 1 thread)."""
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    if device == "cuda":
        seconds = timing.cuda_time(lambda: torch.mm(a, b), budget_ms=50.0 if quick else 500.0)
    else:
        settings = timing.Settings.quick() if quick else timing.Settings(rounds=9, round_seconds=0.1)
        summary = timing.time_cpu([timing.Candidate("matmul", torch.mm, [(a, b)])], settings, cpu_time=threads == 1)
        seconds = summary["matmul"]["median_s"]
    return 2.0 * n ** 3 / seconds / 1e9


def measure_peak(device: str, dtype: torch.dtype, threads: int, quick: bool = False) -> dict:
    """{"gflops", "method", "label"} for ``device`` ("cpu"/"cuda") at ``threads`` CPU threads and ``dtype``."""
    dtype_name = str(dtype).replace("torch.", "")
    if device == "cuda":
        n = 2048 if quick else 8192
        gflops = _matmul_gflops(n, dtype, "cuda", 1, quick)
        return {"gflops": gflops, "method": "matmul",
                "label": f"torch.mm {dtype_name} {n}³ on {torch.cuda.get_device_name(0)}"}
    with timing.torch_threads(threads):
        hook = _cpu_fma_hook()
        if hook is not None and dtype == torch.float32:
            return {"gflops": float(hook(threads)), "method": "fma-loop",
                    "label": f"FMA-bound loop, fp32, {threads} thread(s) (levit_kernels._C.fma_peak_gflops)"}
        n = 256 if quick else 1024
        gflops = _matmul_gflops(n, dtype, "cpu", threads, quick)
    return {"gflops": gflops, "method": "matmul",
            "label": f"reference matmul throughput (torch.mm {dtype_name} {n}³, {threads} thread(s); "
                     f"not the FMA peak: the extension has no fma_peak_gflops)"}
