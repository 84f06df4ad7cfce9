"""What the Triton kernels need to know about the process: interpreter or GPU, fp32 dot precision, tile sizes,
autotune configs. Imports triton only inside functions, so the package imports where triton is missing."""
from __future__ import annotations

import os

import torch

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# GPU tl.dot needs every dot dimension (M, N, K) to be at least 16; the interpreter accepts less, so the launchers
# check it themselves (see assert_dot_shape) and pad tiles up to it.
MIN_DOT = 16

_kernel_mode = None  # the interpreter setting the kernels were decorated under, once a kernel module is imported


def interpreting() -> bool:
    """Whether TRITON_INTERPRET is on. Triton reads it when @triton.jit decorates a function, so after the first
    kernel module is imported the mode of the already built kernels wins (see freeze_kernel_mode)."""
    if _kernel_mode is not None:
        return _kernel_mode
    return _env_interpret()


def _env_interpret() -> bool:
    import triton

    knobs = getattr(triton, "knobs", None)
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on", "y")


def freeze_kernel_mode() -> bool:
    """Called by each kernel module at import: records the mode its @triton.jit functions were built in."""
    global _kernel_mode
    if _kernel_mode is None:
        _kernel_mode = _env_interpret()
    elif _kernel_mode != _env_interpret():
        raise RuntimeError("levit_kernels triton backend: TRITON_INTERPRET changed after the first Triton kernels "
                           "were built; set it before using the backend")
    return _kernel_mode


def dot_precision(dtype: torch.dtype) -> str:
    """tl.dot input precision. fp32 follows torch's matmul setting: exact ("ieee") unless the caller opted into TF32
    with torch.backends.cuda.matmul.allow_tf32 / set_float32_matmul_precision("high"). fp16/bf16 dots ignore it."""
    if dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return "ieee" if dtype == torch.float32 else "tf32"


def block(n: int, minimum: int = MIN_DOT) -> int:
    """Power-of-two tile side covering n, at least ``minimum``."""
    return max(minimum, 1 << max(0, int(n) - 1).bit_length())


def assert_dot_shape(kernel: str, m: int, n: int, k: int):
    """The GPU constraint on every tl.dot (M, N, K ≥ 16, powers of two), enforced here for interpreted runs too."""
    for name, side in (("M", m), ("N", n), ("K", k)):
        if side < MIN_DOT or side & (side - 1):
            raise AssertionError(f"{kernel}: tl.dot {name} = {side} must be a power of two >= {MIN_DOT} on GPU")


def dtype_class(dtype: torch.dtype) -> str:
    """Which autotune list a launch draws from: "fp32" for 4-byte operands, "half" for fp16/bf16. The two need
    different tiles: an exact fp32 ("ieee") tl.dot is expanded into FMAs with its operands in registers, and a
    4-byte tile held across a loop takes twice the registers of a 16-bit one (scripts/triton_compile_check.py)."""
    return "fp32" if dtype.itemsize == 4 else "half"


def config_key(config) -> str:
    """A config's identity (its tiles, warps, stages), for matching one list's entries against another's."""
    return str(config)


def tuned_configs(by_dtype: dict, interpreted_config) -> list:
    """Autotune candidates: the union of the per-dtype-class GPU lists (``by_dtype``: {"fp32": [...], "half":
    [...]}, each list's untuned default first); each list's first entry alone when
    LEVIT_KERNELS_TRITON_AUTOTUNE=0 (quick compiles for shape sweeps in tests); one fixed config when interpreted
    (multi-config autotune needs a driver to time them). Read when the kernel modules are imported. A launch
    keeps only its own dtype's entries (see :func:`for_dtype`)."""
    if interpreting():
        return [interpreted_config]
    if os.environ.get("LEVIT_KERNELS_TRITON_AUTOTUNE", "1") == "0":
        return unique(configs[0] for configs in by_dtype.values())
    return unique(c for configs in by_dtype.values() for c in configs)


def unique(configs) -> list:
    seen = {}
    for config in configs:
        seen.setdefault(config_key(config), config)
    return list(seen.values())


def for_dtype(configs, by_dtype: dict, dtype: torch.dtype) -> list:
    """The candidates among ``configs`` that ``dtype``'s list holds, in that list's order (``configs`` itself when
    none is: the interpreter's single config); only the first when autotuning is off."""
    keys = {config_key(c): c for c in configs}
    kept = [keys[config_key(c)] for c in by_dtype[dtype_class(dtype)] if config_key(c) in keys]
    if os.environ.get("LEVIT_KERNELS_TRITON_AUTOTUNE", "1") == "0":
        kept = kept[:1]
    return kept or list(configs)
