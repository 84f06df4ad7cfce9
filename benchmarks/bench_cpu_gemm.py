"""CPU (C++) linear and mlp against eager PyTorch at LeViT-256 stage-1 shapes (batch 16: 3136 tokens), fp32, with
the weight from the packed-weight cache and explicitly packed, 1 thread and all threads.

(Every op shape of every variant is in bench_ops.py / ``levit-kernels bench``; this file is the GEMM close-up.)

pytest-benchmark (``--benchmark-disable``: smoke run, each candidate once, output checked)::

    python -m pytest benchmarks/bench_cpu_gemm.py [--benchmark-disable]

Interleaved comparison (levit_kernels.bench.timing; CPU time at 1 thread) with GFLOP/s, % of the FMA peak measured
in the same run (levit_kernels._C.fma_peak_gflops) and the per-call overhead at a tiny shape::

    python benchmarks/bench_cpu_gemm.py [--rounds 15] [--threads 1]
"""
from __future__ import annotations

import argparse
import os

import pytest
import torch

import levit_kernels as lk
from levit_kernels import reference, tolerances
from levit_kernels.bench import peak, timing

TOKENS = 16 * 196
C, HIDDEN = 256, 512
CANDIDATES = ("eager", "cpu", "cpu-packed")


def make_case(op: str, seed: int = 0):
    """({candidate: fn}, float64 reference fn, flops) for ``op`` at the LeViT-256 shapes."""
    from levit_kernels.backends.cpu import gemm

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 196, C, generator=gen)
    w1, b1 = torch.randn(HIDDEN, C, generator=gen) / C ** 0.5, torch.randn(HIDDEN, generator=gen)
    w2, b2 = torch.randn(C, HIDDEN, generator=gen) / HIDDEN ** 0.5, torch.randn(C, generator=gen)
    f64 = [t.double() for t in (x, w1, b1, w2, b2)]
    if op == "linear":  # the MLP's first layer: 256 → 512, bias, Hardswish
        pw1 = gemm.pack_weight(w1)
        fns = {"eager": lambda: reference.linear(x, w1, b1, "hardswish"),
               "cpu": lambda: lk.linear(x, w1, b1, "hardswish", backend="cpu"),
               "cpu-packed": lambda: gemm.linear_packed(x, pw1, HIDDEN, b1, "hardswish")}
        return fns, lambda: reference.linear(*f64[:3], "hardswish"), 2 * TOKENS * C * HIDDEN
    if op == "mlp":  # 256 → 512 → 256, Hardswish, residual
        pw1, pw2 = gemm.pack_weight(w1), gemm.pack_weight(w2)
        fns = {"eager": lambda: reference.mlp(x, w1, b1, w2, b2),
               "cpu": lambda: lk.mlp(x, w1, b1, w2, b2, backend="cpu"),
               "cpu-packed": lambda: gemm.mlp_packed(x, pw1, b1, pw2, b2)}
        return fns, lambda: reference.mlp(*f64), 4 * TOKENS * C * HIDDEN
    raise ValueError(op)


@pytest.mark.parametrize("threads", [1, "all"], ids=lambda t: f"threads={t}")
@pytest.mark.parametrize("candidate", CANDIDATES)
@pytest.mark.parametrize("op", ["linear", "mlp"])
def test_gemm(benchmark, op, candidate, threads):
    ok, why = lk.availability("cpu")
    if not ok:
        pytest.skip(why)
    fns, ref, flops = make_case(op)
    benchmark.group = f"levit_256 {op} N{TOKENS} threads={threads}"
    with timing.torch_threads(1 if threads == 1 else os.cpu_count()):
        out = benchmark(fns[candidate])
    assert tolerances.max_rel_error(out, ref()) <= tolerances.kernel_rtol(torch.float32)
    benchmark.extra_info["flops"] = flops


def per_call_overhead(settings: timing.Settings, cpu_time: bool) -> dict:
    """Seconds per call at a tiny shape (1 token, 8 → 8), where the arithmetic is negligible."""
    from levit_kernels.backends.cpu import gemm

    x, w, b = torch.randn(1, 8), torch.randn(8, 8), torch.randn(8)
    pw = gemm.pack_weight(w)
    fns = {
        "F.linear": lambda: torch.nn.functional.linear(x, w, b),
        "torch.ops.levit_kernels.linear (cached weight)": lambda: torch.ops.levit_kernels.linear.default(
            x, w, b, None, None),
        "torch.ops.levit_kernels.linear_packed": lambda: torch.ops.levit_kernels.linear_packed.default(
            x, pw, 8, b, None, None),
        "lk.linear(backend='cpu') (validation + backend lookup)": lambda: lk.linear(x, w, b, backend="cpu"),
    }
    summary = timing.time_cpu([timing.Candidate(k, f, [()]) for k, f in fns.items()], settings, cpu_time)
    return {k: v["median_s"] for k, v in summary.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    settings = timing.Settings(rounds=args.rounds, round_seconds=0.2)
    cpu_time = args.threads == 1
    with timing.torch_threads(args.threads):
        fma = peak.measure_peak("cpu", torch.float32, args.threads)
        print(f"ISA {lk.cpu_isa()}, {args.threads} thread(s), medians of {args.rounds} interleaved rounds "
              f"({'CPU' if cpu_time else 'wall'} time); peak {fma['gflops']:.1f} GFLOP/s ({fma['label']})")
        for op in ("linear", "mlp"):
            fns, ref, flops = make_case(op)
            errors = {name: tolerances.max_rel_error(fn(), ref()) for name, fn in fns.items()}
            summary = timing.time_cpu([timing.Candidate(k, f, [()]) for k, f in fns.items()], settings, cpu_time)
            eager = summary["eager"]["median_s"]
            for name, s in summary.items():
                gflops = flops / s["median_s"] / 1e9
                print(f"{op:6s} {name:10s} {s['median_s'] * 1e3:7.2f} ms {gflops:6.1f} GFLOP/s "
                      f"{100 * gflops / fma['gflops']:4.0f}% of peak  {eager / s['median_s']:.2f}x eager  "
                      f"err {errors[name]:.1e}")
        for name, seconds in per_call_overhead(settings, cpu_time).items():
            print(f"per call: {name:55s} {seconds * 1e6:6.2f} us")


if __name__ == "__main__":
    main()
