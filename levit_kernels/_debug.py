"""Test aids shared by all backends."""
import contextlib
import threading

import torch

_state = threading.local()
# The C++ extension's poison flag is process-wide: it stays on while any thread is inside poisoned_outputs(), so a
# thread leaving the block cannot turn it off under another thread's running call (the concurrency tests).
_cxx_lock = threading.Lock()
_cxx_users = 0


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
    extension's process-wide, for as long as any thread is inside such a block). Blocks nest."""
    global _cxx_users
    from levit_kernels.backends.cpu import _loader

    ext, _ = _loader._load()
    outer = poison_enabled()
    _state.poison = True
    if ext is not None:
        with _cxx_lock:
            _cxx_users += 1
            ext.set_poison_outputs(True)
    try:
        yield
    finally:
        _state.poison = outer
        if ext is not None:
            with _cxx_lock:
                _cxx_users -= 1
                if _cxx_users == 0:
                    ext.set_poison_outputs(False)
