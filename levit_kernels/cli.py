"""Command line: ``levit-kernels <command>`` or ``python -m levit_kernels <command>``.

Each command is a :class:`Command` in :data:`COMMANDS`: its arguments and a ``run(args) -> exit code``. Errors
print one line to stderr and exit non-zero (``LEVIT_KERNELS_DEBUG=1`` shows the traceback instead).
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

PROG = "levit-kernels"


class UsageError(Exception):
    """Bad command-line usage (argparse's complaints are turned into this)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print usage and exit; we want one line and an exit code
        raise UsageError(f"{self.prog}: error: {message}")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# ---------------------------------------------------------------------------------------------------- shared
BACKEND_CHOICES = ("auto", "reference", "cpu", "triton")
DTYPE_CHOICES = ("float32", "float16", "bfloat16")


def _add_model_arguments(parser: argparse.ArgumentParser, checkpoint_required: bool = False,
                         every_family: bool = True) -> None:
    """--model (any registered name of every family, or LeViT's only), --checkpoint, --seed."""
    from levit.config import MODEL_NAMES
    from levit.registry import model_names

    names = model_names() if every_family else MODEL_NAMES
    parser.add_argument("--model", default="levit_256", choices=names, help="model (default levit_256)")
    if checkpoint_required:
        parser.add_argument("--checkpoint", required=True,
                            help="weights to load (timm, timm-conv, official or levit layout)")
    else:
        parser.add_argument("--checkpoint", default=None,
                            help="weights to load (timm, timm-conv, official or levit layout); default: untrained "
                                 "weights with randomized BatchNorm statistics and attention biases")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs (default 0)")


def _add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="auto", choices=BACKEND_CHOICES,
                        help="ops backend (default auto: cpu on CPU, triton on a GPU)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="auto: cuda when available and the backend is auto or triton, else cpu")


def _device(args: argparse.Namespace) -> str:
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")
    if args.device != "auto":
        return args.device
    return "cuda" if torch.cuda.is_available() and args.backend in ("auto", "triton") else "cpu"


def _load_model(args: argparse.Namespace):
    """The requested model in eval mode on CPU, and a description of its weights."""
    import torch

    import levit

    model = levit.create_model(args.model, checkpoint=args.checkpoint)
    if args.checkpoint is None:
        levit.randomize_(model, torch.Generator().manual_seed(args.seed))
        return model.eval(), "untrained weights, randomized BatchNorm statistics and attention biases"
    return model.eval(), args.checkpoint


# ---------------------------------------------------------------------------------------------------- info
def run_info(args: argparse.Namespace) -> int:
    import platform

    import torch

    import levit_kernels
    from levit_kernels import backends
    from levit_kernels.bench import hardware

    versions = [f"python {platform.python_version()}", f"torch {torch.__version__}"]
    for package in ("triton", "numpy", "onnxruntime", "PIL"):
        try:
            versions.append(f"{package} {__import__(package).__version__}")
        except Exception:  # not installed, or broken
            versions.append(f"{package} not installed")
    print(f"levit-kernels {levit_kernels.__version__} ({', '.join(versions)})")
    isa = hardware.active_isa()
    print(f"CPU: {hardware.describe_cpu()}, {hardware.cpu_cores()} cores usable, torch threads "
          f"{torch.get_num_threads()}; best ISA by CPU flags {hardware.detected_isa()}, "
          + (f"CPU kernels run {isa}" if isa else "CPU kernels not built"))
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            print(f"GPU {i}: {props.name}, sm_{props.major}{props.minor}, {props.total_memory / 2**30:.0f} GiB, "
                  f"CUDA {torch.version.cuda}")
    else:
        print("GPU: none visible to torch")
    print("backends:")
    for name, (ok, why) in backends.report().items():
        print(f"  {name:<10} {'available' if ok else 'unavailable: ' + why}")
    return 0


# ---------------------------------------------------------------------------------------------------- verify
def _add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    _add_model_arguments(parser)
    _add_backend_arguments(parser)
    parser.add_argument("--dtype", default="float32", choices=DTYPE_CHOICES,
                        help="compute dtype of the optimized model (default float32; fp16/bf16 need a GPU backend "
                             "or the reference)")
    parser.add_argument("--batch", type=positive_int, default=4, help="random images to compare on (default 4)")


def run_verify(args: argparse.Namespace) -> int:
    import levit_kernels

    device = _device(args)
    model, _ = _load_model(args)
    report = levit_kernels.verify(model.to(device), backend=args.backend, dtype=args.dtype, batch=args.batch,
                                  seed=args.seed)
    print(report.table())
    if not report.passed:
        bad = report.first_failure
        print(f"{PROG} verify: {args.model} failed: {bad.name} has relative error {bad.rel_error:.2e} > "
              f"{bad.tolerance:.2e}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------------------------------------- predict
def _add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    _add_model_arguments(parser, checkpoint_required=True)
    _add_backend_arguments(parser)
    parser.add_argument("--top", type=positive_int, default=5, help="classes to show per image (default 5)")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any format PIL reads)")


def run_predict(args: argparse.Namespace) -> int:
    import levit_kernels
    from levit_kernels import predict

    device = _device(args)

    def skip(path, exc):
        print(f"{PROG} predict: skipping {path}: cannot read it as an image ({_one_line(exc)})", file=sys.stderr)

    loaded = predict.load_images(args.images, on_error=skip)
    if not loaded:
        print(f"{PROG} predict: error: none of the {len(args.images)} image(s) could be read", file=sys.stderr)
        return 1
    model, _ = _load_model(args)
    optimized = levit_kernels.optimize(model.to(device), backend=args.backend)
    for result in predict.classify(lambda images: optimized(images.to(device)), loaded, args.top):
        print(result.format())
    return 0


# ---------------------------------------------------------------------------------------------------- demo
def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    _add_model_arguments(parser, every_family=False)  # it counts multiply-adds from LeViT's config
    parser.add_argument("--backend", default="auto", choices=BACKEND_CHOICES,
                        help="ops backend of the optimized model (default auto: cpu when built)")
    parser.add_argument("--batch", type=positive_int, default=16, help="images per timed batch (default 16)")
    parser.add_argument("--threads", type=positive_int, default=1, help="CPU threads (default 1, as the paper)")
    parser.add_argument("--repeats", type=positive_int, default=5,
                        help="timed rounds, the candidates interleaved in each (default 5)")
    parser.add_argument("--verify-batch", type=positive_int, default=4,
                        help="images of the end-to-end check (default 4)")


def _median_seconds(fns: Sequence[Callable[[], object]], repeats: int) -> tuple[list[float], str]:
    """Median time of each fn over interleaved rounds (the benchmarks' timing: process CPU time at 1 thread, so
    other processes' load does not count), and how it was measured."""
    import torch

    from levit_kernels.bench.timing import Candidate, Settings, time_cpu

    single = torch.get_num_threads() == 1
    candidates = [Candidate(str(i), fn, [()]) for i, fn in enumerate(fns)]
    times = time_cpu(candidates, Settings(rounds=repeats, warmup_calls=1, round_seconds=0.0), cpu_time=single)
    return [times[c.name]["median_s"] for c in candidates], "process CPU time" if single else "wall time"


def run_demo(args: argparse.Namespace) -> int:
    """Build a LeViT; check BN folding and the optimized model end to end; time eager, folded and optimized."""
    import torch

    import levit
    import levit_kernels
    from levit_kernels import tolerances

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model, weights = _load_model(args)
    fused = levit.fuse(copy.deepcopy(model))
    report = levit_kernels.verify(model, backend=args.backend, batch=args.verify_batch, seed=args.seed)
    optimized = levit_kernels.optimize(model, backend=args.backend)
    images = torch.randn(args.batch, 3, model.img_size, model.img_size,
                         generator=torch.Generator().manual_seed(args.seed + 1))

    params = sum(p.numel() for p in model.parameters())
    macs = levit.count_macs(model.spec, model.img_size, model.num_classes, model.distillation)
    print(f"{model.name}: {params:,} parameters, {macs / 1e6:.1f} M multiply-adds per image ({weights})")
    print(f"end-to-end check of levit_kernels.optimize (backend {optimized.backend}):")
    print("\n".join("  " + line for line in report.table().splitlines()))
    with torch.no_grad():
        reference, out = model(images), fused(images)
        candidates = [("eager, unfused", lambda: model(images)), ("eager, BN fused", lambda: fused(images)),
                      (f"levit_kernels[{optimized.backend}]", lambda: optimized(images))]
        seconds, clock = _median_seconds([fn for _, fn in candidates], args.repeats)
    print(f"CPU, {torch.get_num_threads()} thread(s), batch {args.batch}, fp32; medians of {args.repeats} "
          f"interleaved rounds ({clock}); speed-up against the BN-fused eager model")
    for (label, _), sec in zip(candidates, seconds):
        print(f"  {label:<22} {sec * 1e3:9.1f} ms/batch {args.batch / sec:9.1f} images/s "
              f"({seconds[1] / sec:.2f}x)")
    error, tol = tolerances.max_rel_error(out, reference), tolerances.FUSE_FP32_RTOL
    verdict = "OK" if error <= tol else "FAILED"
    print(f"max relative error, fused vs unfused: {error:.2e} (tolerance {tol:.0e}): {verdict}")
    failures = ([f"fused output differs from unfused by {error:.2e} > {tol:.0e}"] if error > tol else []) + (
        [f"optimized model failed verification at {report.first_failure.name}"] if not report.passed else [])
    for failure in failures:
        print(f"{PROG} demo: error: {failure}", file=sys.stderr)
    return 1 if failures else 0


def _add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    from levit_kernels.bench.command import add_bench_arguments

    add_bench_arguments(parser)


def run_bench(args: argparse.Namespace) -> int:
    from levit_kernels.bench import run_bench as bench

    return bench(args)


COMMANDS = [
    Command("demo", "build a LeViT, optimize it, check it end to end, time eager vs optimized on CPU",
            _add_demo_arguments, run_demo),
    Command("info", "versions, CPU and ISA, GPU, and which backends can run here (and why not)",
            lambda parser: None, run_info),
    Command("verify", "compare levit_kernels.optimize(model) with the eager model: logits and every block",
            _add_verify_arguments, run_verify),
    Command("predict", "ImageNet top-5 of image files with a LeViT checkpoint", _add_predict_arguments,
            run_predict),
    Command("bench", "time the fused ops and models against baselines on this machine", _add_bench_arguments,
            run_bench),
]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Fused CPU and GPU kernels for LeViT.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for command in COMMANDS:
        sp = sub.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sp)
        sp.set_defaults(run=command.run)
    return parser


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, (UsageError, ValueError, OSError)) else f"{type(exc).__name__}: {text}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit code (0 success, 1 failure, 2 bad usage)."""
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(f"{_one_line(exc)} (see '{PROG} --help')", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one line, no traceback: see the module docstring
        if os.environ.get("LEVIT_KERNELS_DEBUG") == "1":
            raise
        print(f"{PROG} {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
