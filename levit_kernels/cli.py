"""Command line: ``levit-kernels <command>`` or ``python -m levit_kernels <command>``.

Each command is a :class:`Command` in :data:`COMMANDS`: its arguments and a ``run(args) -> exit code``. Errors
print one line to stderr and exit non-zero (``LEVIT_KERNELS_DEBUG=1`` shows the traceback instead).
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
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


# ---------------------------------------------------------------------------------------------------- demo
def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    from levit.config import MODEL_NAMES

    parser.add_argument("--model", default="levit_256", choices=MODEL_NAMES, help="variant (default levit_256)")
    parser.add_argument("--batch", type=positive_int, default=16, help="images per batch (default 16)")
    parser.add_argument("--threads", type=positive_int, default=1, help="CPU threads (default 1, as the paper)")
    parser.add_argument("--repeats", type=positive_int, default=5,
                        help="timed rounds, unfused and fused interleaved in each (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and batch (default 0)")
    parser.add_argument("--checkpoint", default=None,
                        help="weights to load (timm, timm-conv, official or levit layout); default: untrained "
                             "weights with randomized BatchNorm statistics and attention biases")


def _median_seconds(fns: Sequence[Callable[[], object]], repeats: int) -> list[float]:
    """Median wall time of each fn, timed in interleaved rounds so machine-load drifts hit all alike."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, bucket in zip(fns, times):
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def run_demo(args: argparse.Namespace) -> int:
    import torch

    import levit
    from levit_kernels import tolerances

    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    model = levit.create_model(args.model, checkpoint=args.checkpoint)
    weights = args.checkpoint or "untrained weights, randomized BatchNorm statistics and attention biases"
    if args.checkpoint is None:
        levit.randomize_(model, gen)
    model.eval()
    fused = levit.fuse(copy.deepcopy(model))
    images = torch.randn(args.batch, 3, model.img_size, model.img_size, generator=gen)

    params = sum(p.numel() for p in model.parameters())
    macs = levit.count_macs(model.spec, model.img_size, model.num_classes, model.distillation)
    print(f"{model.name}: {params:,} parameters, {macs / 1e6:.1f} M multiply-adds per image ({weights})")
    with torch.inference_mode():
        reference, out = model(images), fused(images)  # also the warm-up
        seconds = _median_seconds([lambda: model(images), lambda: fused(images)], args.repeats)
    print(f"CPU, {torch.get_num_threads()} thread(s), batch {args.batch}, fp32; medians of {args.repeats} "
          f"interleaved rounds")
    for label, sec in (("eager, unfused", seconds[0]), ("eager, BN fused", seconds[1])):
        print(f"  {label:<16} {sec * 1e3:9.1f} ms/batch {args.batch / sec:9.1f} images/s "
              f"({seconds[0] / sec:.2f}x)")
    error, tol = tolerances.max_rel_error(out, reference), tolerances.FUSE_FP32_RTOL
    verdict = "OK" if error <= tol else "FAILED"
    print(f"max relative error, fused vs unfused: {error:.2e} (tolerance {tol:.0e}): {verdict}")
    if error > tol:
        print(f"{PROG} demo: error: fused output differs from unfused by {error:.2e} > {tol:.0e}", file=sys.stderr)
        return 1
    return 0


COMMANDS = [
    Command("demo", "build a LeViT, fuse it, run a random batch on CPU: params, FLOPs, images/s, fusion error",
            _add_demo_arguments, run_demo),
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
