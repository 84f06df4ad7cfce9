"""Loads the compiled extension once and reports whether the CPU backend can run."""
from __future__ import annotations

import contextlib
import functools

ISAS = ("scalar", "avx2", "avx512", "neon")


@functools.lru_cache(maxsize=1)
def _load():
    """(module, None) or (None, reason)."""
    try:
        from levit_kernels import _C  # noqa: F401  (importing registers the torch custom ops)
    except ImportError as exc:
        return None, (f"the C++ extension levit_kernels._C is not built ({exc}); "
                      f"build it with `pip install --no-build-isolation -e .`")
    try:
        _C.active_isa()  # surfaces a bad LEVIT_KERNELS_ISA here, once, with its message
    except ValueError as exc:
        return None, str(exc)
    return _C, None


def extension():
    mod, why = _load()
    if mod is None:
        raise RuntimeError(f"levit_kernels CPU backend unavailable: {why}")
    return mod


def availability() -> tuple[bool, str]:
    mod, why = _load()
    return (mod is not None), (why or "")


def cpu_isa() -> str:
    """ISA variant the CPU kernels run: "avx512", "avx2", "neon" or "scalar"."""
    return extension().active_isa()


def isa_supported(name: str) -> bool:
    if name not in ISAS:
        raise ValueError(f"isa must be one of {ISAS}, got {name!r}")
    return extension().isa_supported(name)


def supported_isas() -> list[str]:
    return [name for name in ISAS if isa_supported(name)]


@contextlib.contextmanager
def force_isa(name: str):
    """Run the CPU kernels with ISA ``name`` inside the block (process-wide; for tests and benchmarks)."""
    if name not in ISAS:
        raise ValueError(f"isa must be one of {ISAS}, got {name!r}")
    ext = extension()
    previous = ext.active_isa()
    ext.set_active_isa(name)
    try:
        yield
    finally:
        ext.set_active_isa(previous)
