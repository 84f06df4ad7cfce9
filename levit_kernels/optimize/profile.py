"""Where an optimized LeViT spends its time: per step (stem, each block, head) and the host overhead per forward.

    python -m levit_kernels.optimize.profile --model levit_256 --batch 16 --threads 1

- :func:`step_times`: median seconds of every step, timed one by one in interleaved rounds (CUDA synchronised);
- :func:`host_overhead`: the seconds one forward spends outside the ops: the blocks and head run with every op
  replaced by one that returns its recorded output, so what remains is Python, views and dispatch.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from types import SimpleNamespace
from typing import Callable

import torch

from levit_kernels.optimize.fused import OptimizedLeViT, Runtime

OPS = Runtime._fields[:4]  # linear, mlp, biased_attention, shrink_attention


def _sync(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def step_times(model: OptimizedLeViT, images: torch.Tensor, repeats: int = 5) -> list[float]:
    """Median seconds of each of ``model.step_names`` on ``images`` (after one warm-up pass)."""
    sync = _sync(model.device)
    with torch.no_grad():
        inputs = [images]
        for step in model._steps:  # warm-up, and each step's input
            inputs.append(step(inputs[-1]))
        times: list[list[float]] = [[] for _ in model._steps]
        for _ in range(repeats):
            for step, x, bucket in zip(model._steps, inputs, times):
                sync()
                start = time.perf_counter()
                step(x)
                sync()
                bucket.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def by_kind(model: OptimizedLeViT, seconds: list[float]) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for kind, sec in zip(model.step_kinds, seconds):
        totals[kind] += sec
    return dict(totals)


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


def main(argv=None) -> int:
    import levit
    from levit.config import MODEL_NAMES
    from levit_kernels.optimize import optimize

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="levit_256", choices=MODEL_NAMES)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = levit.randomize_(levit.create_model(args.model), torch.Generator().manual_seed(0)).eval()
    optimized = optimize(model, backend=args.backend)
    images = torch.randn(args.batch, 3, optimized.image_size, optimized.image_size)
    seconds = step_times(optimized, images, args.repeats)
    total = sum(seconds)
    print(f"{args.model}, backend {optimized.backend}, batch {args.batch}, {torch.get_num_threads()} thread(s): "
          f"{total * 1e3:.1f} ms per forward (sum of step medians), {args.batch / total:.1f} images/s")
    for kind, sec in by_kind(optimized, seconds).items():
        print(f"  {kind:<10} {sec * 1e3:9.2f} ms  {100 * sec / total:5.1f}%")
    overhead = host_overhead(optimized, images[:1])
    print(f"host overhead per forward (batch 1, ops replayed): {overhead * 1e6:.0f} µs over "
          f"{len(optimized.blocks)} blocks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
