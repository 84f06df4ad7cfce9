"""Peak memory of one levit_kernels.attention call on the cpu backend, measured in a fresh process
(tests/test_attention.py runs it).

    python tests/support/attention_memory_probe.py N D [--threads T]

q, k, v (1, 1, N, D) float32. The op runs once at N = 64 first, so the extension, its per-thread workspaces and
torch's allocator are in the baseline. Prints one JSON line: the peak resident set during the call (VmHWM, reset
just before it), the resident set just before it, the bytes of the inputs and of the output.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from memory_probe import peak_bytes, reset_peak, resident_bytes  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", type=int)
    parser.add_argument("d", type=int)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)

    import torch

    import levit_kernels as lk

    if args.threads:
        torch.set_num_threads(args.threads)
    small = [torch.randn(1, 1, 64, args.d) for _ in range(3)]
    lk.attention(*small, backend="cpu")
    q, k, v = (torch.randn(1, 1, args.n, args.d) for _ in range(3))
    gc.collect()
    baseline = resident_bytes()
    reset = reset_peak()
    out = lk.attention(q, k, v, backend="cpu")
    peak = peak_bytes(reset)
    assert out.isfinite().all()
    print(json.dumps({"peak": peak, "baseline": baseline, "inputs": 3 * q.numel() * q.element_size(),
                      "output": out.numel() * out.element_size()}))


if __name__ == "__main__":
    main()
