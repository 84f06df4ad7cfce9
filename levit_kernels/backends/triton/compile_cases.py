"""What scripts/triton_compile_check.py compiles ahead of time for real GPUs: every Triton kernel × its GPU
autotune configs × the constexpr combinations the models produce.

Each kernel module defines ``compile_cases() -> list[CompileCase]``, built from the models' own op shapes
(:mod:`levit.config`), and is named once in :data:`MODULES`: a new kernel module is one line here. A case is one
*shape class*: the constexprs one launch of the kernel gets, with the configs its autotuner would try at that shape
(after the kernel's own early prune, per dtype: fp32 and fp16/bf16 draw from different lists); shapes whose
constexprs differ only in index arithmetic but give the same tiles are one class (see each module's
``compile_cases``). ``PRECISION`` is left out: the check sets it per dtype, as
:func:`levit_kernels.backends.triton._runtime.dot_precision` does.

``--quick`` compiles only the classes no other class covers (:func:`mark_covered`): a class whose tile sides are
all at most another's, with a subset of its configs, needs no more registers or shared memory than that one.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator

# The kernel modules the check imports (levit_kernels.backends.triton.<name>), each with compile_cases().
MODULES = ("biased", "shrink", "gemm", "flash", "norm_pool")

# Scalar arguments that are floats (everything else not a pointer or constexpr is an int32).
FLOAT_ARGS = ("scale",)


# The dtypes the check compiles, by its names for them.
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


@dataclasses.dataclass
class CompileCase:
    kernel: object  # the @triton.autotune'd (or plain @triton.jit) kernel
    shape_class: str  # e.g. "levit_128s s1 N196 D16 DV64"
    constexprs: dict  # every constexpr except the config's and PRECISION
    configs: object  # the GPU triton.Configs its autotuner tries here: a tuple, or {dtype name: tuple}
    covered: bool = False  # another class of the kernel needs at least this one's resources (--quick skips it)

    def configs_for(self, dtype: str) -> tuple:
        return tuple(self.configs[dtype]) if isinstance(self.configs, dict) else tuple(self.configs)


def per_dtype(prune, configs, constexprs: dict, dtype_arg: str) -> dict:
    """{dtype name: the configs ``prune`` (an autotuner's early_config_prune) keeps at ``constexprs`` for a launch
    whose ``dtype_arg`` tensor has that dtype}: the same function the autotuner calls, fed an empty stand-in."""
    import torch

    return {name: tuple(prune(configs, {**constexprs, dtype_arg: torch.empty(0, dtype=getattr(torch, dt))}))
            for name, dt in DTYPES.items()}


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
        key = tuple(case.constexprs[k] for k in tile_keys) + (_config_names(case),)
        seen.setdefault(key, case)
    return mark_covered(list(seen.values()), tile_keys)


def _config_names(case: CompileCase) -> tuple:
    return tuple((dtype, tuple(map(str, case.configs_for(dtype)))) for dtype in DTYPES)


def mark_covered(cases: list[CompileCase], tile_keys: tuple[str, ...],
                 equal_keys: tuple[str, ...] = ()) -> list[CompileCase]:
    """Mark each case that another case of its kernel covers: every ``tile_keys`` constexpr (tile sides, pair
    counts, flags: numbers or bools, larger = more resources) at most the other's, every ``equal_keys`` one (e.g.
    the activation's code) equal, the remaining constexprs being index arithmetic, and for every dtype a subset of
    its configs. Of equal cases the first stays uncovered."""
    def covers(big: CompileCase, small: CompileCase) -> bool:
        return big.kernel is small.kernel and all(small.constexprs[k] <= big.constexprs[k] for k in tile_keys) and \
            all(small.constexprs[k] == big.constexprs[k] for k in equal_keys) and \
            all(set(map(str, small.configs_for(d))) <= set(map(str, big.configs_for(d))) for d in DTYPES)

    for i, case in enumerate(cases):
        case.covered = any(covers(other, case) and (not covers(case, other) or j < i)
                           for j, other in enumerate(cases) if j != i)
    return cases
