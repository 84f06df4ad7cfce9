"""Close-up of the linear kernel at every LeViT projection shape: ours (linear_packed, weight packed once) against
torch.nn.functional.linear (+ the residual added in place), 1 thread, batch 16, fp32.

Rounds alternate the two (A B, B A, ...), each round times enough calls for ~30 ms of thread CPU time (time spent
descheduled by the machine's other processes does not count), three input sets in turn; the result is the median
over rounds, as GFLOP/s, % of the FMA peak measured in the same process, and the ratio ours / torch::

    PYTHONPATH=. python benchmarks/probe_linear_shapes.py [--models levit_128s levit_256 levit_384] [--rounds 9]

(PYTHONPATH=. from a source checkout: a script's own folder, not the working directory, leads sys.path, so without
it an installed levit_kernels is the one imported; the first line prints the panel width of the one in use.)

(``levit-kernels bench --ops linear`` is the full report; this one is quick enough to run before and after a
change to csrc/gemm.)
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F

import levit_kernels._C as C
from levit_kernels.backends.cpu import gemm
from levit_kernels.bench.cases import op_cases


def shapes(models):
    """Distinct (rows, in, out, residual) of the models' linear ops at batch 16."""
    seen = {}
    for model in models:
        for case in op_cases(model, {"linear"}, 16, torch.float32, "cpu", 1):
            s = case.shape
            seen.setdefault((16 * s["N"], s["in"], s["out"], bool(s["residual"])), None)
    return list(seen)


def probe(m, k, n, residual, rounds):
    pool = [(torch.randn(m, k), torch.randn(m, n) if residual else None) for _ in range(3)]
    w, b = torch.randn(n, k) / k ** 0.5, torch.randn(n)
    pw = gemm.pack_weight(w)
    fns = (lambda x, r: gemm.linear_packed(x, pw, n, b, None, r),
           (lambda x, r: F.linear(x, w, b).add_(r)) if residual else (lambda x, r: F.linear(x, w, b)))
    torch.testing.assert_close(fns[0](*pool[0]), fns[1](*pool[0]), rtol=1e-4, atol=1e-4)
    flops = 2 * m * n * k
    calls = max(1, int(0.03 / (flops / 80e9)))
    times = ([], [])
    for r in range(rounds):
        for j in ((0, 1) if r % 2 == 0 else (1, 0)):
            start = time.thread_time()
            for c in range(calls):
                fns[j](*pool[c % 3])
            times[j].append((time.thread_time() - start) / calls)
    return [flops / statistics.median(t) / 1e9 for t in times]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["levit_128s", "levit_256", "levit_384"])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(1)
    peak = C.fma_peak_gflops(1)
    print(f"FMA peak {peak:.1f} GFLOP/s (1 thread); panel width {torch.ops.levit_kernels.gemm_panel_width()}")
    ratios = []
    for m, k, n, residual in shapes(args.models):
        ours, theirs = probe(m, k, n, residual, args.rounds)
        ratios.append(ours / theirs)
        print(f"M{m:5d} {k:5d} → {n:5d}{' +res' if residual else '     '}  ours {ours:6.1f} GFLOP/s "
              f"{100 * ours / peak:3.0f}%  torch {theirs:6.1f}  ×{ours / theirs:.2f}", flush=True)
    print(f"geomean ×{math.exp(sum(map(math.log, ratios)) / len(ratios)):.3f}, min ×{min(ratios):.2f}")


if __name__ == "__main__":
    main()
