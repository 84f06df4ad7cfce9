"""Cost of the GELU epilogue (simd::gelu, csrc/simd/activations.h) next to Hardswish and no activation, in the CPU
linear (fc1 + activation) and mlp (fc1 + activation + fc2 + residual) at EfficientFormer-L1's four MLP shapes
(C = 48/96/224/448, hidden 4C, 56²/28²/14²/7² tokens per image), fp32, 1 thread, against eager PyTorch
(F.linear + F.gelu; reference.mlp). Weights packed once (linear_packed / mlp_packed: the kernels alone).

pytest-benchmark (``--benchmark-disable``: smoke run, each candidate once, output checked)::

    python -m pytest benchmarks/bench_cpu_activations.py [--benchmark-disable]

Interleaved comparison (levit_kernels.bench.timing, process CPU time at 1 thread): per shape and op, the medians and
the ratios cpu-gelu / cpu-hardswish, cpu-gelu / cpu-none and eager-gelu / cpu-gelu::

    python benchmarks/bench_cpu_activations.py [--rounds 11] [--batch 1]
"""
from __future__ import annotations

import argparse

import pytest
import torch
import torch.nn.functional as F

import levit_kernels as lk
from levit_kernels import reference, tolerances
from levit_kernels.bench import timing

# (tokens per image, C) of EfficientFormer-L1's four stages; hidden = 4C (efficientformer-facts).
L1_MLPS = [(56 * 56, 48), (28 * 28, 96), (14 * 14, 224), (7 * 7, 448)]
KERNEL_ACTIVATIONS = ("gelu", "hardswish", None)


def make_case(op: str, tokens: int, c: int, batch: int = 1, seed: int = 0):
    """({candidate: fn}, {candidate: float64 reference fn}) for ``op`` at one L1 stage."""
    from levit_kernels.backends.cpu import gemm

    hidden = 4 * c
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, tokens, c, generator=gen)
    w1, b1 = torch.randn(hidden, c, generator=gen) / c ** 0.5, torch.randn(hidden, generator=gen)
    w2, b2 = torch.randn(c, hidden, generator=gen) / hidden ** 0.5, torch.randn(c, generator=gen)
    f64 = [t.double() for t in (x, w1, b1, w2, b2)]
    pw1, pw2 = gemm.pack_weight(w1), gemm.pack_weight(w2)
    fns, refs = {}, {}
    if op == "linear":
        fns["eager-gelu"] = lambda: F.gelu(F.linear(x, w1, b1))
        refs["eager-gelu"] = lambda: reference.linear(*f64[:3], "gelu")
        for act in KERNEL_ACTIVATIONS:
            fns[f"cpu-{act}"] = lambda act=act: gemm.linear_packed(x, pw1, hidden, b1, act)
            refs[f"cpu-{act}"] = lambda act=act: reference.linear(*f64[:3], act)
    elif op == "mlp":
        fns["eager-gelu"] = lambda: reference.mlp(x, w1, b1, w2, b2, "gelu", True)
        refs["eager-gelu"] = lambda: reference.mlp(*f64, "gelu", True)
        for act in KERNEL_ACTIVATIONS:
            fns[f"cpu-{act}"] = lambda act=act: gemm.mlp_packed(x, pw1, b1, pw2, b2, act, True)
            refs[f"cpu-{act}"] = lambda act=act: reference.mlp(*f64, act, True)
    else:
        raise ValueError(op)
    return fns, refs


@pytest.mark.parametrize("candidate", ["eager-gelu"] + [f"cpu-{a}" for a in KERNEL_ACTIVATIONS])
@pytest.mark.parametrize("op", ["linear", "mlp"])
@pytest.mark.parametrize("tokens,c", L1_MLPS, ids=lambda v: str(v))
def test_activation_epilogue(benchmark, op, tokens, c, candidate):
    ok, why = lk.availability("cpu")
    if not ok:
        pytest.skip(why)
    fns, refs = make_case(op, tokens, c)
    benchmark.group = f"efficientformer_l1 {op} N{tokens} C{c} threads=1"
    with timing.torch_threads(1):
        out = benchmark(fns[candidate])
    assert tolerances.max_rel_error(out, refs[candidate]()) <= tolerances.kernel_rtol(torch.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    settings = timing.Settings(rounds=args.rounds, round_seconds=0.1)
    with timing.torch_threads(1):
        print(f"ISA {lk.cpu_isa()}, 1 thread, batch {args.batch}, fp32, medians of {args.rounds} interleaved rounds "
              f"(process CPU time)")
        print(f"{'op':6s} {'tokens':>6s} {'C':>4s}  " + "  ".join(f"{n:>13s}" for n in
                                                                 ["eager-gelu", "cpu-gelu", "cpu-hardswish",
                                                                  "cpu-None"])
              + "   gelu/hswish  gelu/none  eager/cpu-gelu")
        for op in ("linear", "mlp"):
            for tokens, c in L1_MLPS:
                fns, refs = make_case(op, tokens, c, args.batch)
                for name, fn in fns.items():
                    err = tolerances.max_rel_error(fn(), refs[name]())
                    assert err <= tolerances.kernel_rtol(torch.float32), f"{op} {name}: error {err:.1e}"
                summary = timing.time_cpu([timing.Candidate(k, f, [()]) for k, f in fns.items()], settings, True)
                t = {k: v["median_s"] for k, v in summary.items()}
                print(f"{op:6s} {tokens * args.batch:6d} {c:4d}  "
                      + "  ".join(f"{t[n] * 1e3:10.3f} ms" for n in ["eager-gelu", "cpu-gelu", "cpu-hardswish",
                                                                      "cpu-None"])
                      + f"   {t['cpu-gelu'] / t['cpu-hardswish']:10.2f}x {t['cpu-gelu'] / t['cpu-None']:9.2f}x "
                        f"{t['eager-gelu'] / t['cpu-gelu']:14.2f}x")


if __name__ == "__main__":
    main()
