"""CPU (C++) linear and mlp against eager PyTorch at LeViT-256 stage-1 shapes, fp32, 1 thread and all threads.

pytest-benchmark (quick smoke run that also checks the outputs: add ``--benchmark-disable``)::

    python -m pytest benchmarks/bench_cpu_gemm.py [--benchmark-disable]

Interleaved comparison with medians, GFLOP/s, share of one core's FMA peak and per-call overhead::

    python benchmarks/bench_cpu_gemm.py [--reps 30] [--threads 1]

With one thread the script times by the thread's CPU time (time.thread_time), which stays put when other processes
time-slice the same core (wall-clock medians on a shared 2-core machine swing by 2x); with more threads, wall time.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time

import pytest
import torch

import levit_kernels as lk
from levit_kernels import reference, tolerances

TOKENS = 16 * 196  # batch 16 on LeViT-256's 14×14 stage-1 grid
C, HIDDEN = 256, 512


def make_case(op: str, seed: int = 0):
    """(eager fn, cpu fn, float64 reference fn, flops) for ``op`` at the LeViT-256 shapes."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 196, C, generator=gen)
    w1, b1 = torch.randn(HIDDEN, C, generator=gen) / C ** 0.5, torch.randn(HIDDEN, generator=gen)
    w2, b2 = torch.randn(C, HIDDEN, generator=gen) / HIDDEN ** 0.5, torch.randn(C, generator=gen)
    f64 = [t.double() for t in (x, w1, b1, w2, b2)]
    if op == "linear":  # the MLP's first layer: 256 → 512, bias, Hardswish
        return (lambda: reference.linear(x, w1, b1, "hardswish"),
                lambda: lk.linear(x, w1, b1, "hardswish", backend="cpu"),
                lambda: reference.linear(*f64[:3], "hardswish"), 2 * TOKENS * C * HIDDEN)
    if op == "mlp":  # 256 → 512 → 256, Hardswish, residual
        return (lambda: reference.mlp(x, w1, b1, w2, b2),
                lambda: lk.mlp(x, w1, b1, w2, b2, backend="cpu"),
                lambda: reference.mlp(*f64), 4 * TOKENS * C * HIDDEN)
    raise ValueError(op)


@pytest.fixture(params=[1, "all"], ids=lambda t: f"threads={t}")
def threads(request):
    previous = torch.get_num_threads()
    torch.set_num_threads(1 if request.param == 1 else os.cpu_count())
    yield torch.get_num_threads()
    torch.set_num_threads(previous)


@pytest.mark.parametrize("impl", ["eager", "cpu"])
@pytest.mark.parametrize("op", ["linear", "mlp"])
def test_gemm(benchmark, op, impl, threads):
    ok, why = lk.availability("cpu")
    if not ok:
        pytest.skip(why)
    eager, cpu, ref, flops = make_case(op)
    fn = eager if impl == "eager" else cpu
    out = benchmark(fn)
    assert tolerances.max_rel_error(out, ref()) <= tolerances.kernel_rtol(torch.float32)
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["GFLOP/s"] = round(flops / benchmark.stats.stats.median / 1e9, 1)


# ---- interleaved comparison (script) ----------------------------------------------------------------------------


def fma_peak_gflops() -> float | None:
    """One core's AVX2 fp32 FMA peak, from benchmarks/fma_peak.cpp (None where it cannot be built or run)."""
    if platform.machine() not in ("x86_64", "AMD64") or shutil.which("g++") is None:
        return None
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fma_peak.cpp")
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "fma_peak")
        subprocess.run(["g++", "-O2", "-mavx2", "-mfma", src, "-o", exe], check=True)
        return float(subprocess.run([exe], check=True, capture_output=True, text=True).stdout)


def interleaved_medians(fns: dict, reps: int, clock=time.perf_counter) -> dict:
    """Median seconds of each fn, timed in turn within every repetition (so background load hits all alike)."""
    times = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm-up (and weight packing)
    for _ in range(reps):
        for name, fn in fns.items():
            t0 = clock()
            fn()
            times[name].append(clock() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def dispatch_overhead_us(reps: int, clock) -> dict:
    """Per-call cost at a tiny shape (1 token, 8 → 8), where the arithmetic is negligible."""
    from levit_kernels.backends.cpu import gemm

    x, w, b = torch.randn(1, 8), torch.randn(8, 8), torch.randn(8)
    pw = gemm.pack_weight(w)
    fns = {
        "torch F.linear": lambda: torch.nn.functional.linear(x, w, b),
        "torch.ops.levit_kernels.linear": lambda: torch.ops.levit_kernels.linear.default(x, w, b, None, None),
        "...linear_packed (no cache lookup)": lambda: torch.ops.levit_kernels.linear_packed.default(x, pw, 8, b, None,
                                                                                                    None),
        "lk.linear(backend='cpu')": lambda: lk.linear(x, w, b, backend="cpu"),
    }
    inner = 200
    looped = {name: (lambda f=f: [f() for _ in range(inner)]) for name, f in fns.items()}
    return {name: t / inner * 1e6 for name, t in interleaved_medians(looped, reps, clock).items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock, clock_name = (time.thread_time, "thread CPU time") if args.threads == 1 else (time.perf_counter, "wall")
    peak = fma_peak_gflops()
    print(f"ISA {lk.cpu_isa()}, {args.threads} thread(s), {args.reps} interleaved reps, medians of {clock_name}; "
          f"FMA peak of one core (CPU time): {peak if peak else 'n/a'} GFLOP/s")
    for op in ("linear", "mlp"):
        eager, cpu, ref, flops = make_case(op)
        err = tolerances.max_rel_error(cpu(), ref())
        t = interleaved_medians({"eager": eager, "cpu": cpu}, args.reps, clock)
        gf = {k: flops / v / 1e9 for k, v in t.items()}
        share = f", {100 * gf['cpu'] / (peak * args.threads):.0f}% of peak" if peak else ""
        print(f"{op:6s} eager {t['eager'] * 1e3:7.2f} ms {gf['eager']:6.1f} GFLOP/s | cpu {t['cpu'] * 1e3:7.2f} ms "
              f"{gf['cpu']:6.1f} GFLOP/s{share} | cpu/eager speed-up {t['eager'] / t['cpu']:.2f}x | err {err:.1e}")
    for name, us in dispatch_overhead_us(max(args.reps // 3, 5), clock).items():
        print(f"per-call {name:32s} {us:6.2f} us")


if __name__ == "__main__":
    main()
