"""What scripts/triton_compile_check.py compiles ahead of time for real GPUs: every Triton kernel × its GPU
autotune configs × the constexpr combinations the models produce.

Each kernel module defines ``compile_cases() -> list[CompileCase]``, built from the models' own op shapes
(:mod:`levit.config`), and is named once in :data:`MODULES`: a new kernel module is one line here. A case is one
*shape class*: the constexprs one launch of the kernel gets, with the configs its autotuner would try at that shape
(after the kernel's own early prune); shapes whose constexprs differ only in index arithmetic but give the same
tiles are one class (see each module's ``compile_cases``). ``PRECISION`` is left out: the check sets it per dtype,
as :func:`levit_kernels.backends.triton._runtime.dot_precision` does.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator

# The kernel modules the check imports (levit_kernels.backends.triton.<name>), each with compile_cases().
MODULES = ("biased", "shrink", "gemm", "flash")

# Scalar arguments that are floats (everything else not a pointer or constexpr is an int32).
FLOAT_ARGS = ("scale",)


@dataclasses.dataclass(frozen=True)
class CompileCase:
    kernel: object  # the @triton.autotune'd (or plain @triton.jit) kernel
    shape_class: str  # e.g. "levit_128s s1 N196 D16 DV64"
    constexprs: dict  # every constexpr except the config's and PRECISION
    configs: tuple  # the GPU triton.Configs its autotuner tries here


def levit_blocks(kind: str) -> Iterator[tuple[str, object]]:
    """(variant, block shape) of every ``kind`` block ("attention", "shrink", "mlp") of every LeViT variant."""
    from levit import config

    for variant in config.MODEL_NAMES:
        for block in config.op_shapes(variant):
            if block.kind == kind:
                yield variant, block


def distinct(cases: list[CompileCase], tile_keys: tuple[str, ...]) -> list[CompileCase]:
    """The first case of each combination of ``tile_keys`` constexprs (and config list): one per shape class."""
    seen = {}
    for case in cases:
        key = tuple(case.constexprs[k] for k in tile_keys) + (tuple(map(str, case.configs)),)
        seen.setdefault(key, case)
    return list(seen.values())
