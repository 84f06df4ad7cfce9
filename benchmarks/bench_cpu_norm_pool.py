"""CPU (C++) pool_mixer and layer_norm against eager PyTorch at the EfficientFormer-L1 shapes, fp32.

pool_mixer, every Meta4D stage of L1 (56²×48, 28²×96, 14²×224, 7²×448), against the eager chain timm's
EfficientFormer runs, ``x + ls·(avg_pool2d(x) − x)`` (LayerScale2d's ``x · γ.view(1, −1, 1, 1)``), on an NCHW
tensor and on the same tensor in channels_last memory; ours takes the channels-last (B, H, W, C) map, through the
public op (argument checks, backend lookup) and through the backend function optimize() calls.
layer_norm: the Meta3D LayerNorm (49 tokens × 448), F.layer_norm with and without the affine against ours.
GB/s counts the bytes an ideal single pass moves (input read once, output written once).

pytest-benchmark (``--benchmark-disable``: smoke run, each candidate once, output checked)::

    python -m pytest benchmarks/bench_cpu_norm_pool.py [--benchmark-disable]

Interleaved comparison (levit_kernels.bench.timing; CPU time at 1 thread), batch 16 and batch 1::

    python benchmarks/bench_cpu_norm_pool.py [--rounds 15] [--threads 1] [--batch 16 1]
"""
from __future__ import annotations

import argparse

import pytest
import torch
import torch.nn.functional as F

import levit_kernels as lk
from levit_kernels import reference, tolerances
from levit_kernels.backends import cpu
from levit_kernels.bench import cases, timing

# EfficientFormer-L1: Meta4D stages (map side, width), and the Meta3D width (its last stage, 7×7 tokens).
L1_POOL_STAGES = [(56, 48), (28, 96), (14, 224), (7, 448)]
L1_NORM = (49, 448)
LLC_BYTES = 32 << 20  # input pools spill a 32 MiB last-level cache twice (Zen 3 CCX)


def pool_case(side: int, c: int, batch: int, seed: int = 0):
    """({candidate: (fn, input pool)}, {candidate: output → (B, H, W, C)}, float64 reference of the first input
    set, bytes per call)."""
    gen = torch.Generator().manual_seed(seed)
    set_bytes = 4 * batch * side * side * c
    n = cases.pool_size(set_bytes, "cpu", LLC_BYTES)
    nhwc = [torch.randn(batch, side, side, c, generator=gen) for _ in range(n)]
    ls = torch.randn(c, generator=gen) * 0.1
    nchw = [x.permute(0, 3, 1, 2).contiguous() for x in nhwc]
    nchw_cl = [x.contiguous(memory_format=torch.channels_last) for x in nchw]
    ls4 = ls.view(1, -1, 1, 1)

    def timm_chain(x):  # timm EfficientFormer: x + ls1(pool(x) − x), Pooling = AvgPool2d(3, 1, 1, False)
        return x + ls4 * (F.avg_pool2d(x, 3, 1, 1, count_include_pad=False) - x)

    fns = {
        "eager NCHW": (timm_chain, [(x,) for x in nchw]),
        "eager channels_last": (timm_chain, [(x,) for x in nchw_cl]),
        "cpu": (lambda x: lk.pool_mixer(x, ls, 3, backend="cpu"), [(x,) for x in nhwc]),
        "cpu backend fn": (lambda x: cpu.pool_mixer(x, ls, 3), [(x,) for x in nhwc]),
    }
    to_nhwc = lambda out: out.permute(0, 2, 3, 1)  # noqa: E731
    checks = {"eager NCHW": to_nhwc, "eager channels_last": to_nhwc, "cpu": lambda out: out,
              "cpu backend fn": lambda out: out}
    ref = reference.pool_mixer(nhwc[0].double(), ls.double(), 3)
    return fns, checks, ref, 2 * set_bytes


def norm_case(tokens: int, c: int, batch: int, affine: bool, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    set_bytes = 4 * batch * tokens * c
    n = cases.pool_size(set_bytes, "cpu", LLC_BYTES)
    xs = [torch.randn(batch, tokens, c, generator=gen) for _ in range(n)]
    w, b = (torch.randn(c, generator=gen), torch.randn(c, generator=gen)) if affine else (None, None)
    fns = {
        "F.layer_norm": (lambda x: F.layer_norm(x, (c,), w, b, 1e-5), [(x,) for x in xs]),
        "cpu": (lambda x: lk.layer_norm(x, w, b, 1e-5, backend="cpu"), [(x,) for x in xs]),
        "cpu backend fn": (lambda x: cpu.layer_norm(x, w, b, 1e-5), [(x,) for x in xs]),
    }
    checks = {name: (lambda out: out) for name in fns}
    ref = reference.layer_norm(xs[0].double(), *(None if t is None else t.double() for t in (w, b)))
    return fns, checks, ref, 2 * set_bytes


def all_cases(batch: int):
    for side, c in L1_POOL_STAGES:
        yield f"pool_mixer B{batch} {side}x{side}x{c}", pool_case(side, c, batch)
    for affine in (False, True):
        yield f"layer_norm B{batch} {L1_NORM[0]}x{L1_NORM[1]} affine={affine}", norm_case(*L1_NORM, batch, affine)


def _checked_outputs(fns, checks, ref):
    """Each candidate's max relative error on the first input set."""
    return {name: tolerances.max_rel_error(checks[name](fn(*pool[0])), ref) for name, (fn, pool) in fns.items()}


@pytest.mark.parametrize("batch", [16, 1])
def test_norm_pool(benchmark, batch):
    ok, why = lk.availability("cpu")
    if not ok:
        pytest.skip(why)
    for label, (fns, checks, ref, _) in all_cases(batch):
        for name, err in _checked_outputs(fns, checks, ref).items():
            assert err <= tolerances.kernel_rtol(torch.float32), f"{label} {name}: error {err:.1e}"
    fn, pool = pool_case(56, 48, batch)[0]["cpu"]
    benchmark.group = f"pool_mixer 56x56x48 batch {batch}"
    with timing.torch_threads(1):
        benchmark(fn, *pool[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, nargs="+", default=[16, 1])
    args = parser.parse_args()
    settings = timing.Settings(rounds=args.rounds, round_seconds=0.1)
    cpu_time = args.threads == 1
    with timing.torch_threads(args.threads):
        print(f"ISA {lk.cpu_isa()}, {args.threads} thread(s), medians of {args.rounds} interleaved rounds "
              f"({'CPU' if cpu_time else 'wall'} time)")
        for batch in args.batch:
            for label, (fns, checks, ref, nbytes) in all_cases(batch):
                errors = _checked_outputs(fns, checks, ref)
                summary = timing.time_cpu([timing.Candidate(k, fn, pool) for k, (fn, pool) in fns.items()],
                                          settings, cpu_time)
                ours = summary["cpu"]["median_s"]
                for name, s in summary.items():
                    seconds = s["median_s"]
                    print(f"{label:38s} {name:20s} {seconds * 1e6:9.1f} us {nbytes / seconds / 1e9:6.1f} GB/s  "
                          f"ours {seconds / ours:5.2f}x faster  err {errors[name]:.1e}")


if __name__ == "__main__":
    main()
