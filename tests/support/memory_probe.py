"""Peak memory of an optimized LeViT forward, measured in a fresh process (tests/test_scale.py runs it).

    python tests/support/memory_probe.py {model,blocks} BATCH [--blocks N] [--name levit_128s]

``model``: images (BATCH, 3, 224, 224) through the whole optimized model; ``blocks``: random tokens shaped like the
stem's output (BATCH, N, C) through its first N blocks only (the fused ops block by block, no stem). Prints one JSON
line: the peak resident set during the forward (VmHWM, reset just before it; it counts the C++ allocations that
tracemalloc cannot see), the resident set just before the forward (input included), the input's bytes and the
forward's CPU seconds. The model is built, packed and run once at batch 2 first, so weights, packed copies and
per-thread workspaces are in the baseline and only what grows with the batch is not.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import time


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak() -> bool:
    """Restart the kernel's peak-RSS count (VmHWM) from the current RSS, so the peak read after the forward is the
    forward's, not that of building and packing the model (which can exceed a small batch's forward). Linux >= 4.0."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_bytes(reset: bool) -> int:
    """Peak resident set since reset_peak() (VmHWM), else since the process began (ru_maxrss)."""
    if reset:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("model", "blocks"))
    parser.add_argument("batch", type=int)
    parser.add_argument("--blocks", type=int, default=0, help="blocks mode: how many blocks (0: all)")
    parser.add_argument("--name", default="levit_128s")
    args = parser.parse_args(argv)

    import torch

    import levit
    import levit_kernels as lk

    torch.manual_seed(0)
    model = levit.randomize_(levit.create_model(args.name), torch.Generator().manual_seed(0)).eval()
    optimized = lk.optimize(model, backend="cpu")
    del model
    blocks = list(optimized.blocks)[:args.blocks or None]

    def forward(x):
        if args.mode == "model":
            return optimized(x)
        for block in blocks:
            x = block(x)
        return x

    with torch.inference_mode():
        token_shape = optimized.stem(torch.zeros(1, 3, 224, 224)).shape[1:]

    def make_input(batch):
        return torch.randn(batch, 3, 224, 224) if args.mode == "model" else torch.randn(batch, *token_shape)

    with torch.inference_mode():
        forward(make_input(2))
        x = make_input(args.batch)
        gc.collect()
        baseline = resident_bytes()
        reset = reset_peak()
        start = time.process_time()
        out = forward(x)
        seconds = time.process_time() - start
    assert out.isfinite().all()
    peak = peak_bytes(reset)
    print(json.dumps({"peak": peak, "baseline": baseline, "input": x.numel() * x.element_size(),
                      "seconds": seconds, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
