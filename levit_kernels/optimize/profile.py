"""Where an optimized model spends its time: per step (stem, each block, head) and the host overhead per forward.

    python -m levit_kernels.optimize.profile --model levit_256 --batch 16 --threads 1
    python -m levit_kernels.optimize.profile --model levit_256 --batch 1 --threads 2 --img-size 448x800

- :func:`step_times`: median seconds of every step, timed one by one in interleaved rounds (the benchmarks' timing);
- :func:`host_overhead`: the seconds one forward spends outside the ops: the blocks and head run with every op
  replaced by one that returns its recorded output, so what remains is Python, views and dispatch.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from types import SimpleNamespace
from typing import Optional

import torch

from levit_kernels.bench.timing import Candidate, Settings, time_candidates
from levit_kernels.optimize.fused import OPS, OptimizedLeViT, Runtime


def step_times(model: OptimizedLeViT, images: torch.Tensor, settings: Optional[Settings] = None) -> list[float]:
    """Median seconds of each of ``model.step_names`` on ``images``, timed as the benchmarks time candidates
    (interleaved rounds; single-threaded CPU runs by process CPU time, robust to a loaded machine)."""
    with torch.no_grad():
        inputs = [images]
        for step in model._steps:  # each step's input
            inputs.append(step(inputs[-1]))
        candidates = [Candidate(f"{i}", step, [(x,)]) for i, (step, x) in enumerate(zip(model._steps, inputs))]
        single = model.device.type == "cpu" and torch.get_num_threads() == 1
        times = time_candidates(candidates, model.device.type, settings or Settings(), cpu_time=single)
    return [times[c.name]["median_s"] for c in candidates]


def op_times(model: OptimizedLeViT, images: torch.Tensor, rounds: int = 5) -> dict[tuple[str, str], float]:
    """{(block kind, op): median over rounds of the seconds per forward spent in that op}: each op call timed
    (process CPU time at 1 CPU thread, else wall time) with the blocks run in order."""
    real = model.blocks[0]._ops
    clock = time.process_time if model.device.type == "cpu" and torch.get_num_threads() == 1 else time.perf_counter
    totals: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0] * rounds)
    state = SimpleNamespace(kind="", round=0)

    def timed(name):
        fn = getattr(real, name)

        def op(*args):
            start = clock()
            out = fn(*args)
            totals[(state.kind, name)][state.round] += clock() - start
            return out
        return op

    model.bind(Runtime(*[timed(n) for n in OPS], packed=real.packed))
    try:
        with torch.no_grad():
            for state.round in [0] + list(range(rounds)):  # round 0 twice: the first pass is a warm-up
                for key in totals:
                    totals[key][state.round] = 0.0
                x = images
                for kind, step in zip(model.step_kinds, model._steps):
                    state.kind = kind
                    x = step(x)
    finally:
        model.bind(real)
    return {key: statistics.median(values) for key, values in totals.items()}


def host_overhead(model: OptimizedLeViT, images: torch.Tensor, repeats: int = 50) -> float:
    """Median seconds per forward of everything but the ops and the stem's convolutions (see the module doc)."""
    real = model.blocks[0]._ops
    recorded: list[torch.Tensor] = []

    def recording(name):
        def op(*args):
            out = getattr(real, name)(*args)
            recorded.append(out)
            return out
        return op

    def replaying(name):
        def op(*args):
            out = recorded[state.i]
            state.i += 1
            return out
        return op

    state = SimpleNamespace(i=0)
    try:
        with torch.no_grad():
            model.bind(Runtime(*[recording(n) for n in OPS], packed=real.packed))
            tokens = model.stem(images)
            x = tokens
            for step in model._steps[1:]:
                x = step(x)
            model.bind(Runtime(*[replaying(n) for n in OPS], packed=real.packed))
            times = []
            for _ in range(repeats):
                state.i = 0
                start = time.perf_counter()
                model._check(images)
                x = tokens
                for step in model._steps[1:]:
                    x = step(x)
                times.append(time.perf_counter() - start)
    finally:
        model.bind(real)
    return statistics.median(times)


def step_macs(name: str, img_size: int = 224, num_classes: int = 1000) -> list[int]:
    """Multiply-adds per image of each step of optimized model ``name`` (any family): stem, blocks, the one merged
    head (:mod:`levit_kernels.optimize.macs`)."""
    import levit
    from levit_kernels.optimize import describe
    from levit_kernels.optimize.macs import step_macs as description_macs

    model = levit.create_model(name, num_classes=num_classes, img_size=img_size).eval()
    return description_macs(describe(model), img_size)


def main(argv=None) -> int:
    import levit
    from levit_kernels.bench.command import _img_size
    from levit_kernels.bench.peak import measure_peak
    from levit_kernels.optimize import optimize

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="levit_256", choices=levit.model_names())
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--img-size", metavar="S|HxW", type=_img_size, default=224,
                        help="input size: S for S×S images or HxW (default 224)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = levit.create_model(args.model, img_size=args.img_size)
    model = levit.randomize_(model, torch.Generator().manual_seed(0)).eval()
    optimized = optimize(model, backend=args.backend)
    images = torch.randn(args.batch, 3, *optimized.image_hw)
    seconds = step_times(optimized, images)
    macs = step_macs(args.model, args.img_size)
    peak = measure_peak("cpu", torch.float32, args.threads)["gflops"]
    total = sum(seconds)
    size = "×".join(str(side) for side in optimized.image_hw)
    print(f"{args.model} at {size}, backend {optimized.backend}, batch {args.batch}, {torch.get_num_threads()} thread(s): "
          f"{total * 1e3:.1f} ms per forward (sum of step medians), {args.batch / total:.1f} images/s, "
          f"{2 * sum(macs) * args.batch / total / 1e9:.1f} GFLOP/s of a {peak:.1f} GFLOP/s peak")
    kinds: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for kind, sec, mac in zip(optimized.step_kinds, seconds, macs):
        kinds[kind][0] += sec
        kinds[kind][1] += mac
    for kind, (sec, mac) in kinds.items():
        gflops = 2 * mac * args.batch / sec / 1e9
        print(f"  {kind:<10} {sec * 1e3:9.2f} ms  {100 * sec / total:5.1f}% of the time  {gflops:6.1f} GFLOP/s "
              f"({100 * gflops / peak:3.0f}% of peak)")
    ops = op_times(optimized, images)
    print("  ops within blocks: " + ", ".join(f"{kind}/{op} {sec * 1e3:.1f} ms" for (kind, op), sec in ops.items()))
    overhead = host_overhead(optimized, images[:1])
    print(f"host overhead per forward (batch 1, ops replayed): {overhead * 1e6:.0f} µs over "
          f"{len(optimized.blocks)} blocks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
