"""Scale: batch 4096 on CPU through an optimized LeViT-128S runs in bounded memory — the memory a forward adds
grows with the batch no faster than the activations it must hold (no per-call scratch, C++ or torch, that scales
with the batch beyond them).

Each measurement is a fresh process (tests/support/memory_probe.py) reporting its peak resident set (ru_maxrss:
C++ allocations included) over its resident set just before the forward. Two batch sizes give the growth per image,
compared with the largest set of activations alive at once per image, computed from the model's shapes
(levit.config). The tests print the measured peak. LEVIT_SCALE_BATCH overrides the large batch (default 4096).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from levit import config
from levit_kernels import backends

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = os.path.join(ROOT, "tests", "support", "memory_probe.py")
NAME = "levit_128s"
BATCH = int(os.environ.get("LEVIT_SCALE_BATCH", "4096"))
FLOAT = 4
# Allocator slop over the exact live set (page rounding, malloc arenas, torch's small temporaries).
SLACK_FACTOR, SLACK_BYTES = 1.25, 32 * 1024

pytestmark = [
    pytest.mark.skipif(not backends.availability("cpu")[0], reason="the CPU backend is not built"),
    pytest.mark.skipif(not hasattr(__import__("levit_kernels"), "optimize"),
                       reason="levit_kernels.optimize does not exist in this checkout"),
]


def require_memory(nbytes: int):
    """Skip (saying why) where the machine cannot hold the large batch next to what already runs."""
    with open("/proc/meminfo") as f:
        available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    needed = nbytes + 2**30  # + the process, torch and the model
    if available < needed:
        pytest.skip(f"needs ~{needed / 2**30:.1f} GiB free for batch {BATCH}, {available / 2**30:.1f} GiB available "
                    f"(LEVIT_SCALE_BATCH sets a smaller batch)")


def probe(mode: str, batch: int, blocks: int = 0) -> dict:
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, PROBE, mode, str(batch), "--blocks", str(blocks), "--name", NAME],
                            env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def block_live_floats(shape) -> tuple[int, int]:
    """(floats alive at once per image while the optimized block runs, excluding its input; its output floats)."""
    if shape.kind == "attention":  # qkv, attention output, projection output (+ residual, in place of it)
        h, d, dv, n = shape.heads, shape.key_dim, shape.value_dim, shape.tokens
        out = n * shape.channels
        return n * h * (2 * d + dv) + n * h * dv + out, out
    if shape.kind == "shrink":  # kv, attention output at the query grid, projection output
        h, d, dv = shape.heads, shape.key_dim, shape.value_dim
        out = shape.queries * shape.out_channels
        return shape.keys * h * (d + dv) + shape.queries * h * dv + out, out
    out = shape.tokens * shape.channels  # mlp: the hidden activation is tiled inside the kernel
    return out, out


def token_path_bound(blocks) -> int:
    """Bytes per image alive at once, at most, while the first ``blocks`` blocks run one after the other (each
    block's input is the previous block's output, except the first block's, which the caller holds)."""
    worst, previous_out = 0, 0
    for shape in config.op_shapes(NAME)[:blocks]:
        live, out = block_live_floats(shape)
        worst = max(worst, previous_out + live)
        previous_out = out
    return worst * FLOAT


def stem_bound() -> int:
    """Bytes per image alive at once in the stem: the channels-last copy of the images and conv1's output, then
    each conv's input and output (Hardswish runs in place)."""
    shapes = config.stem_shapes(NAME)
    first = shapes[0].in_channels * shapes[0].in_side ** 2
    sizes = [first] + [s.out_channels * s.out_side ** 2 for s in shapes]
    return max(a + b for a, b in zip(sizes, sizes[1:])) * FLOAT


def growth_per_image(mode: str, small_batch: int, large_batch: int, blocks: int = 0) -> tuple[float, dict]:
    """(bytes the forward adds per extra image between the two batch sizes, the large run's measurements)."""
    small, large = probe(mode, small_batch, blocks), probe(mode, large_batch, blocks)
    extra = [run["peak"] - run["baseline"] for run in (small, large)]
    return (extra[1] - extra[0]) / (large_batch - small_batch), large


def report(what: str, batch: int, large: dict, per_image: float, bound: int):
    print(f"\n[scale] {NAME} {what}, batch {batch}: peak RSS {large['peak'] / 2**30:.2f} GiB (input "
          f"{large['input'] / 2**30:.2f} GiB, before the forward {large['baseline'] / 2**30:.2f} GiB); growth "
          f"{per_image / 1024:.0f} KiB/image vs live activations {bound / 1024:.0f} KiB/image; forward "
          f"{large['seconds']:.0f} CPU s on {large['threads']} thread(s)")


def check_growth(per_image: float, bound: int, what: str):
    """Growth between a floor and the bound: below a quarter of the activations the forward must hold, the
    measurement saw nothing (e.g. a peak that is not the forward's: ru_maxrss where VmHWM cannot be reset counts
    since the process began, so a build-time peak hides the forward's) and the upper check could not fail."""
    assert per_image > 0.25 * bound, (
        f"{what}: memory grows by {per_image / 1024:.0f} KiB per image, under a quarter of the {bound / 1024:.0f} KiB "
        f"of activations the forward must hold: the measurement is broken")
    assert per_image <= SLACK_FACTOR * bound + SLACK_BYTES, (
        f"{what}: memory grows by {per_image / 1024:.0f} KiB per image, more than the {bound / 1024:.0f} KiB of "
        f"activations alive at once: some per-call buffer scales with the batch")


def test_blocks_grow_only_by_their_activations(capsys):
    """Stage 1 (attention + MLP pairs) and the first shrink attention with its MLP, through the fused ops: the
    blocks whose activations are largest. Materialized attention matrices (4·196² floats, 600 KiB per image in
    stage 1) or a full MLP hidden activation would exceed the bound."""
    shapes = config.op_shapes(NAME)
    n_blocks = next(i for i, s in enumerate(shapes) if s.kind == "shrink") + 2
    batch = BATCH // 4  # the slope is what this test measures; the whole-model test below runs the full batch
    require_memory(batch * (shapes[0].tokens * shapes[0].channels * FLOAT + token_path_bound(n_blocks)))
    bound = token_path_bound(n_blocks)
    per_image, large = growth_per_image("blocks", batch // 4, batch, n_blocks)
    with capsys.disabled():
        report(f"first {n_blocks} blocks", batch, large, per_image, bound)
    check_growth(per_image, bound, "fused blocks")


def test_whole_model_at_batch_4096(capsys):
    require_memory(BATCH * (3 * 224 * 224 * FLOAT + stem_bound()))
    bound = max(stem_bound(), token_path_bound(len(config.op_shapes(NAME))))
    per_image, large = growth_per_image("model", BATCH // 8, BATCH)
    with capsys.disabled():
        report("optimized model", BATCH, large, per_image, bound)
    check_growth(per_image, bound, "optimized model")
