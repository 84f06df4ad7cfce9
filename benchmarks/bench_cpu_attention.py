"""CPU (C++) biased_attention and shrink_attention against eager PyTorch at LeViT shapes, fp32, batch 16: by default
LeViT-256's stage-1 attention (H=4, R=14, D=32, Dv=64) and 14→7 shrink (H=8, D=32, Dv=128, C_in=256); the script
also takes every attention and shrink of LeViT-128S (D=16) and LeViT-256's 7→4 shrink (see SHAPES). q/k/v are
views of the packed qkv / kv projections, the Hardswish fused and the shrink's q_weight stored transposed, as in
the optimized model. Eager is the model's eval path: levit_kernels.reference with the gathered (H, Nq, Nk) bias
already cached.

And levit_kernels.attention (the flash kernel) against torch.nn.functional.scaled_dot_product_attention (its CPU
flash path) at T2T-ViT's shapes (issue 12): N = 3136 and 784 (D = 64, one head, batch 2) and the backbone's N = 197
(6 heads of 64, batch 16); contiguous (B, H, N, D) inputs for both, SDPA's output left in its own (B, H, N, D)
layout (ours is token-major: the layout change is ours to pay). FLOPs: 4·B·H·N²·D (the two products).

pytest-benchmark, 1 thread and all threads (quick smoke run that also checks the outputs: ``--benchmark-disable``)::

    python -m pytest benchmarks/bench_cpu_attention.py [--benchmark-disable]

Interleaved comparison (medians, GFLOP/s, speed-up) and the per-call dispatch overhead at batch 1::

    python benchmarks/bench_cpu_attention.py [--reps 30] [--threads 1] [--ops attention shrink flash]
    python benchmarks/bench_cpu_attention.py --ops 128s-attention-r14 128s-attention-r7 128s-attention-r4 \
        128s-shrink-r14 128s-shrink-r7 256-shrink-r7

With one thread the script times by the thread's CPU time (time.thread_time), which stays put when other
processes time-slice the core; with more threads, wall time.
"""
from __future__ import annotations

import argparse
import importlib
import os
import statistics
import time

import pytest
import torch

import levit_kernels as lk
from levit_kernels import reference, tolerances
from levit_kernels.backends.cpu._loader import extension
from levit_kernels.bench import timing

BATCH, R, D = 16, 14, 32
ACT = "hardswish"

# name: (heads, R, D, Dv, stride, C_in): attention cores (stride 1) and shrinks (stride 2 over C_in channels)
SHAPES = {
    "attention": (4, R, D, 2 * D, 1, 0),  # LeViT-256 stage 1
    "shrink": (8, R, D, 4 * D, 2, 256),  # LeViT-256 14→7
    "256-shrink-r7": (12, 7, 32, 128, 2, 384),
    "128s-attention-r14": (4, 14, 16, 32, 1, 0),
    "128s-attention-r7": (6, 7, 16, 32, 1, 0),
    "128s-attention-r4": (8, 4, 16, 32, 1, 0),
    "128s-shrink-r14": (8, 14, 16, 64, 2, 128),
    "128s-shrink-r7": (16, 7, 16, 64, 2, 256),
}


def make_case(op: str, batch: int = BATCH, seed: int = 0):
    """(eager fn, cpu fn, float64 reference fn, flops) for ``op``, a name of SHAPES."""
    gen = torch.Generator().manual_seed(seed)
    h, R, D, dv, s, c = SHAPES[op]
    n = R * R
    if s == 1:
        qkv = torch.randn(batch, n, h, 2 * D + dv, generator=gen)
        q, k, v = (t.permute(0, 2, 1, 3) for t in qkv.split([D, D, dv], dim=-1))
        ab = torch.randn(h, n, generator=gen)
        bias = reference.gather_attention_bias(ab, R, s)
        args = (q, k, v, ab, R, s)
        nq = n
        return (lambda: reference.biased_attention(*args, activation=ACT, gathered_bias=bias),
                lambda: lk.biased_attention(*args, activation=ACT, backend="cpu"),
                lambda: reference.biased_attention(*(t.double() for t in args[:4]), R, s, activation=ACT),
                2 * batch * h * nq * n * (D + dv))
    x = torch.randn(batch, n, c, generator=gen)
    wq, bq = torch.randn(h * D, c, generator=gen) / c ** 0.5, torch.randn(h * D, generator=gen)
    kv = torch.randn(batch, n, h, D + dv, generator=gen)
    k, v = (t.permute(0, 2, 1, 3) for t in kv.split([D, dv], dim=-1))
    ab = torch.randn(h, n, generator=gen)
    bias = reference.gather_attention_bias(ab, R, s)
    nq = reference.query_grid_side(R, s) ** 2

    def eager():
        q = reference.linear(reference.subsample_tokens(x, R, s), wq, bq)
        q = q.view(batch, nq, h, D).permute(0, 2, 1, 3)
        return reference.biased_attention(q, k, v, ab, R, s, activation=ACT, gathered_bias=bias)

    args = (x, wq, bq, k, v, ab, R, s)
    wq_t = wq.t().contiguous().t()  # as the optimized model stores it (read in place by the kernel)
    return (eager,
            lambda: lk.shrink_attention(x, wq_t, *args[2:], activation=ACT, backend="cpu"),
            lambda: reference.shrink_attention(*(t.double() for t in args[:6]), R, s, activation=ACT),
            2 * batch * nq * c * h * D + 2 * batch * h * nq * n * (D + dv))


# name: (batch, heads, N, D)
FLASH_SHAPES = {"flash N3136": (2, 1, 3136, 64), "flash N784": (2, 1, 784, 64), "flash N197": (16, 6, 197, 64)}


def make_flash_case(name: str, seed: int = 0):
    """(SDPA fn, cpu fn, float64 reference fn, flops) for one of FLASH_SHAPES."""
    b, h, n, d = FLASH_SHAPES[name]
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, h, n, d, generator=gen) for _ in range(3))
    return (lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v),
            lambda: lk.attention(q, k, v, backend="cpu"),
            lambda: reference.attention(q.double(), k.double(), v.double()),
            4 * b * h * n * n * d)


@pytest.fixture(params=[1, "all"], ids=lambda t: f"threads={t}")
def threads(request):
    with timing.torch_threads(1 if request.param == 1 else os.cpu_count()):
        yield torch.get_num_threads()


@pytest.mark.parametrize("impl", ["baseline", "cpu"])
@pytest.mark.parametrize("op", ["attention", "shrink", "flash N784", "flash N197"])
def test_attention(benchmark, op, impl, threads):
    """The fused op against its baseline: eager (LeViT's ops) or SDPA brought to the token-major layout (flash)."""
    ok, why = lk.availability("cpu")
    if not ok:
        pytest.skip(why)
    if op in FLASH_SHAPES:
        sdpa, cpu, ref, flops = make_flash_case(op)
        baseline = lambda: sdpa().transpose(1, 2).flatten(2)  # noqa: E731
    else:
        baseline, cpu, ref, flops = make_case(op)
    out = benchmark(baseline if impl == "baseline" else cpu)
    assert tolerances.max_rel_error(out, ref()) <= tolerances.kernel_rtol(torch.float32)
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["GFLOP/s"] = round(flops / benchmark.stats.stats.median / 1e9, 1)


# ---- interleaved comparison (script) ----------------------------------------------------------------------------


def interleaved_medians(fns: dict, reps: int, clock) -> dict:
    """Median seconds of each fn, timed in turn within every repetition (so background load hits all alike)."""
    times = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(reps):
        for name, fn in fns.items():
            t0 = clock()
            fn()
            times[name].append(clock() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def dispatch_overhead_us(reps: int, clock) -> dict:
    """Per-call cost at batch 1 of LeViT-256 stage-1 attention, through each layer of the call path, and of the
    raw op at a trivial shape (1 query, 1 key, D = Dv = 8: the arithmetic is negligible)."""
    # The module itself: levit_kernels.backends.cpu re-exports a function of the same name.
    attention = importlib.import_module("levit_kernels.backends.cpu.attention")

    eager, public, _, _ = make_case("attention", batch=1)
    gen = torch.Generator().manual_seed(1)
    qkv = torch.randn(1, R * R, 4, 4 * D, generator=gen)
    q, k, v = (t.permute(0, 2, 1, 3) for t in qkv.split([D, D, 2 * D], dim=-1))
    ab = torch.randn(4, R * R, generator=gen)
    raw = torch.ops.levit_kernels.biased_attention.default
    t1, ab1 = torch.randn(1, 1, 1, 8), torch.randn(1, 1)
    fns = {
        "eager reference, B=1": eager,
        "lk.biased_attention(backend='cpu'), B=1": public,
        "backends.cpu.attention.biased_attention, B=1": lambda: attention.biased_attention(q, k, v, ab, R, 1,
                                                                                           D ** -0.5, ACT),
        "torch.ops.levit_kernels.biased_attention, B=1": lambda: raw(q, k, v, ab, R, 1, D ** -0.5, ACT),
        "torch.ops...biased_attention, trivial shape": lambda: raw(t1, t1, t1, ab1, 1, 1, 0.3, None),
        "backends.cpu.attention.biased_attention, trivial": lambda: attention.biased_attention(t1, t1, t1, ab1, 1, 1,
                                                                                                0.3, None),
        "lk.biased_attention(backend='cpu'), trivial": lambda: lk.biased_attention(t1, t1, t1, ab1, 1,
                                                                                   backend="cpu"),
    }
    inner = 50
    looped = {name: (lambda f=f: [f() for _ in range(inner)]) for name, f in fns.items()}
    return {name: t / inner * 1e6 for name, t in interleaved_medians(looped, reps, clock).items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ops", nargs="+", choices=(*SHAPES, "flash"), default=["attention", "shrink", "flash"])
    parser.add_argument("--peak-gflops", type=float, default=None,
                        help="one core's fp32 FMA peak, to print each result's share of it (default: measured by "
                             "levit_kernels._C.fma_peak_gflops)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock, clock_name = (time.thread_time, "thread CPU time") if args.threads == 1 else (time.perf_counter, "wall")
    peak = args.peak_gflops * args.threads if args.peak_gflops else extension().fma_peak_gflops(args.threads)
    print(f"ISA {lk.cpu_isa()}, {args.threads} thread(s), {args.reps} interleaved reps, medians of {clock_name}; "
          f"FMA peak {peak:.1f} GFLOP/s")
    cases = {op: make_case(op) for op in SHAPES if op in args.ops}
    if "flash" in args.ops:
        cases.update({name: make_flash_case(name) for name in FLASH_SHAPES})
    baseline = {op: "sdpa" if op in FLASH_SHAPES else "eager" for op in cases}
    fns = {f"{op} {impl}": fn for op, (base, cpu, _, _) in cases.items()
           for impl, fn in ((baseline[op], base), ("cpu", cpu))}
    t = interleaved_medians(fns, args.reps, clock)
    for op, (_, cpu, ref, flops) in cases.items():
        err = tolerances.max_rel_error(cpu(), ref())
        te, tc = t[f"{op} {baseline[op]}"], t[f"{op} cpu"]
        rate_e, rate_c = flops / te / 1e9, flops / tc / 1e9
        print(f"{op:18s} {baseline[op]} {te * 1e3:8.2f} ms {rate_e:6.1f} GFLOP/s ({100 * rate_e / peak:.0f}%) | "
              f"cpu {tc * 1e3:8.2f} ms {rate_c:6.1f} GFLOP/s ({100 * rate_c / peak:.0f}% of peak) | "
              f"speed-up {te / tc:.2f}x | max rel err {err:.1e}")
    if "attention" in args.ops:
        for name, us in dispatch_overhead_us(max(args.reps // 3, 5), clock).items():
            print(f"per call: {name:46s} {us:8.1f} us")


if __name__ == "__main__":
    main()
