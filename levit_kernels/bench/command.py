"""``levit-kernels bench``: argument parsing, presets, and the results file, chart and table of a run.

The CLI (levit_kernels/cli.py) mounts this with :func:`add_bench_parser` and dispatches to :func:`run_bench`;
``python -m levit_kernels.bench`` runs it standalone.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Optional

import torch

from levit_kernels.bench import hardware, report, results, runner
from levit_kernels.bench.cases import OPS

PRESETS = {
    # The official LeViT speed protocol: CPU 1 thread, batch 16, fp32; GPU AMP (bf16), batch 2048 (1024 for 384).
    "paper": {"cpu": {"dtype": "float32", "threads": 1, "batch": 16, "batch_overrides": {}},
              "cuda": {"dtype": "bfloat16", "threads": None, "batch": 2048, "batch_overrides": {"levit_384": 1024}}},
    # Latency: one image, every CPU thread.
    "latency": {"cpu": {"dtype": "float32", "threads": None, "batch": 1, "batch_overrides": {}},
                "cuda": {"dtype": "bfloat16", "threads": None, "batch": 1, "batch_overrides": {}}},
    # A detection input (issue 15, LeViT issue 25): one 448×800 image, every CPU thread, end to end only.
    "detection": {"cpu": {"dtype": "float32", "threads": None, "batch": 1, "batch_overrides": {},
                          "img_size": (448, 800), "ops": ("e2e",)},
                  "cuda": {"dtype": "bfloat16", "threads": None, "batch": 1, "batch_overrides": {},
                           "img_size": (448, 800), "ops": ("e2e",)}},
}
BASELINES = ("eager", "compile", "sdpa", "flex", "onnxruntime", "openvino", "openvino-default")
DEFAULT_OUTPUT = os.path.join("benchmarks", "results")
DESCRIPTION = ("Time levit-kernels' fused ops and optimized model against eager PyTorch, torch.compile and (GPU "
               "attention) SDPA/FlexAttention or (CPU end to end) ONNX Runtime and OpenVINO on this machine; print "
               "a table and write <output-dir>/<hardware-id>.json and .png.")


def add_bench_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--preset", choices=sorted(PRESETS), default="paper",
                   help="paper: CPU 1 thread batch 16 fp32 / GPU bf16 batch 2048 (1024 for levit_384); "
                        "latency: batch 1, all threads; detection: latency's at 448×800, end to end "
                        "(default: paper)")
    p.add_argument("--model", nargs="+", metavar="NAME",
                   help="models to run: any of levit.model_names(), e.g. efficientformer_l1 (end to end only; default: "
                        "the five LeViTs)")
    p.add_argument("--ops", nargs="+", choices=OPS + ("e2e",), help="what to time (default: all)")
    p.add_argument("--backend", default="auto", choices=("auto", "reference", "cpu", "triton"),
                   help="levit-kernels backend under test (default: auto)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto: cuda when available (and the backend is not cpu), else cpu")
    p.add_argument("--dtype", choices=sorted(runner.DTYPES), help="override the preset's dtype")
    p.add_argument("--batch", type=int, help="override the preset's batch size")
    p.add_argument("--threads", type=int, help="override the preset's CPU thread count")
    p.add_argument("--img-size", metavar="S|HxW", type=_img_size,
                   help="input size, S (square) or HxW, e.g. 448x800 (default: the preset's, 224); a non-square "
                        "size times end to end only")
    p.add_argument("--baselines", nargs="+", choices=BASELINES, help="baselines to run (default: all that apply)")
    p.add_argument("--quick", action="store_true", help="tiny iteration counts (smoke test; numbers not meaningful)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs and weights")
    p.add_argument("--output-dir", default=DEFAULT_OUTPUT,
                   help=f"where <hardware-id>.json and .png go (default: {DEFAULT_OUTPUT})")
    p.add_argument("--no-save", action="store_true", help="print the table only; write no files")
    p.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"),
                   help="print the differences between two results files, measure nothing")
    p.add_argument("--markdown", metavar="RESULTS.json",
                   help="print a results file as the README's markdown section, measure nothing")
    return p


def _img_size(text: str):
    """'224' → 224, '448x800' → (448, 800)."""
    parts = text.lower().replace("×", "x").split("x")
    if len(parts) in (1, 2) and all(p.isdigit() and int(p) > 0 for p in parts):
        sides = tuple(int(p) for p in parts)
        return sides[0] if len(sides) == 1 or sides[0] == sides[1] else sides
    raise argparse.ArgumentTypeError(f"expected S or HxW (positive ints), got {text!r}")


def add_bench_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``bench`` on an argparse subparsers object; the parser's ``func`` is :func:`run_bench`."""
    p = subparsers.add_parser("bench", help="time the fused ops and models against baselines on this machine",
                              description=DESCRIPTION)
    add_bench_arguments(p)
    p.set_defaults(func=run_bench)
    return p


def canonical_command(args: argparse.Namespace) -> str:
    """The command line that reproduces ``args`` (options at their defaults left out)."""
    words = ["levit-kernels", "bench", "--preset", args.preset]
    for flag in ("model", "ops", "baselines"):
        if getattr(args, flag):
            words += [f"--{flag}", *getattr(args, flag)]
    for flag in ("backend", "device"):
        if getattr(args, flag) != "auto":
            words += [f"--{flag}", getattr(args, flag)]
    for flag in ("dtype", "batch", "threads"):
        if getattr(args, flag) is not None:
            words += [f"--{flag}", str(getattr(args, flag))]
    if args.seed != 0:
        words += ["--seed", str(args.seed)]
    if args.quick:
        words.append("--quick")
    if args.output_dir != DEFAULT_OUTPUT:
        words += ["--output-dir", args.output_dir]
    return " ".join(shlex.quote(w) for w in words)


class UsageError(ValueError):
    pass


def _device(args) -> str:
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")
    if args.device != "auto":
        return args.device
    return "cuda" if torch.cuda.is_available() and args.backend not in ("cpu",) else "cpu"


def _backend(args, device: str) -> str:
    from levit_kernels.backends import availability

    if args.backend != "auto":
        ok, why = availability(args.backend)
        if not ok:
            raise UsageError(f"--backend {args.backend} is unavailable here: {why}")
        if (args.backend == "cpu" and device != "cpu"):
            raise UsageError("--backend cpu runs on the CPU; use --device cpu")
        return args.backend
    preferred = "cpu" if device == "cpu" else "triton"
    ok, why = availability(preferred)
    if not ok:
        print(f"levit-kernels bench: backend {preferred} unavailable ({why}); timing the reference backend",
              file=sys.stderr)
        return "reference"
    return preferred


def make_plan(args: argparse.Namespace) -> runner.Plan:
    """Presets and overrides resolved into a :class:`runner.Plan`; raises UsageError on bad combinations."""
    from levit.config import MODEL_NAMES
    from levit.registry import model_names

    models = args.model or list(MODEL_NAMES)
    unknown = [m for m in models if m not in model_names()]
    if unknown:
        raise UsageError(f"--model: unknown variant(s) {unknown}; valid: {', '.join(model_names())}")
    for flag in ("batch", "threads"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UsageError(f"--{flag} must be a positive integer, got {value}")
    device = _device(args)
    preset = PRESETS[args.preset][device]
    dtype = runner.DTYPES[args.dtype or preset["dtype"]]
    if device == "cpu" and dtype == torch.float16:
        raise UsageError("--dtype float16 is a GPU dtype; on CPU use float32 or bfloat16")
    threads = args.threads or preset["threads"] or hardware.cpu_cores()
    overrides = preset["batch_overrides"]

    def batch(name):
        return args.batch or overrides.get(name, preset["batch"])

    img_size = getattr(args, "img_size", None) or preset.get("img_size", 224)
    ops = list(args.ops or preset.get("ops") or OPS + ("e2e",))
    if isinstance(img_size, tuple) and ops != ["e2e"]:
        raise UsageError(f"--img-size {img_size[0]}x{img_size[1]}: a non-square size times end to end only "
                         f"(--ops e2e), got --ops {' '.join(ops)}")
    return runner.Plan(models=models, ops=ops, device=device, dtype=dtype,
                       backend=_backend(args, device), threads=threads, batch=batch,
                       baselines=set(args.baselines) if args.baselines else None, quick=args.quick, seed=args.seed,
                       img_size=img_size, settings={"preset": args.preset, "requested_backend": args.backend})


def _compare(paths) -> int:
    loaded = [results.load(p) for p in paths]
    print(report.compare(*loaded, name_a=paths[0], name_b=paths[1]))
    return 0


def _markdown(path: str) -> int:
    chart = os.path.splitext(path)[0] + ".png"
    print(report.format_markdown(results.load(path), chart if os.path.exists(chart) else None))
    return 0


def run_bench(args: argparse.Namespace) -> int:
    """Entry point of ``levit-kernels bench``; returns the exit code (never non-zero for slowness)."""
    try:
        if args.compare:
            return _compare(args.compare)
        if args.markdown:
            return _markdown(args.markdown)
        plan = make_plan(args)
    except (UsageError, results.ResultsError, OSError) as exc:
        print(f"levit-kernels bench: error: {exc}", file=sys.stderr)
        return 2
    run = runner.run(plan, canonical_command(args))
    print(report.format_run(run))
    if args.no_save:
        return 0
    fp = run["fingerprint"]
    hw_id = hardware.hardware_id(fp, plan.device)
    path = os.path.join(args.output_dir, f"{hw_id}.json")
    try:
        existing = results.load(path) if os.path.exists(path) else None
    except results.ResultsError as exc:
        print(f"levit-kernels bench: error: {exc}; move it aside to start a new file", file=sys.stderr)
        return 2
    data = results.merge(existing, hw_id, run)
    results.save(path, data)
    chart = report.write_chart(data, os.path.join(args.output_dir, f"{hw_id}.png"))
    print(f"\nresults: {path}" + (f"\nchart:   {chart}" if chart else ""))
    return 0


def main(argv: Optional[list] = None) -> int:
    parser = add_bench_arguments(argparse.ArgumentParser(prog="levit-kernels bench", description=DESCRIPTION))
    return run_bench(parser.parse_args(argv))
