"""Test aids shared by all backends."""
import contextlib
import threading

import torch

_state = threading.local()


def poison_enabled() -> bool:
    return getattr(_state, "poison", False)


def new_output(shape, like: torch.Tensor, dtype=None) -> torch.Tensor:
    """Allocate an op output; NaN-filled inside :func:`poisoned_outputs` so unwritten elements show."""
    out = torch.empty(shape, dtype=dtype or like.dtype, device=like.device)
    if poison_enabled():
        out.fill_(float("nan"))
    return out


@contextlib.contextmanager
def poisoned_outputs():
    """Inside the block every backend's op outputs start as NaN (Python-allocated ones for this thread; the C++
    extension's process-wide)."""
    from levit_kernels.backends.cpu import _loader

    ext, _ = _loader._load()
    _state.poison = True
    if ext is not None:
        ext.set_poison_outputs(True)
    try:
        yield
    finally:
        _state.poison = False
        if ext is not None:
            ext.set_poison_outputs(False)
