"""Backend registry: which implementations of the ops exist, whether each can run here, and what "auto" picks.

Every backend module exposes ``attention``, ``biased_attention``, ``shrink_attention``, ``mlp``, ``linear``, ``layer_norm(x, weight,
bias, eps)``, ``pool_mixer(x, layer_scale, pool_size)`` and (not triton) ``conv2d(x, weight, bias, stride, padding,
activation)`` taking already validated arguments (the public ops in
:mod:`levit_kernels.ops` validate), and ``availability() -> (ok, reason)``.
"""
from __future__ import annotations

import importlib
import warnings

import torch

BACKENDS = ("reference", "cpu", "triton")
_MODULES = {
    "reference": "levit_kernels.backends.reference_backend",
    "cpu": "levit_kernels.backends.cpu",
    "triton": "levit_kernels.backends.triton",
}
# Device type each backend runs on (None: any).
_DEVICE = {"reference": None, "cpu": "cpu", "triton": None}
_warned: set[str] = set()
# (op, backend, device type) -> backend module. Resolution runs once per key, so the per-call cost of the public
# ops is a dict lookup, which torch.compile also traces through without a graph break.
_resolved: dict = {}


def module(name: str):
    return importlib.import_module(_MODULES[name])


def availability(name: str) -> tuple[bool, str]:
    """(True, "") when backend ``name`` can run in this process, else (False, why not)."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {('auto',) + BACKENDS}, got {name!r}")
    try:
        mod = module(name)
    except ImportError as exc:  # a backend whose module is missing or whose dependency is absent
        return False, f"cannot import {_MODULES[name]}: {exc}"
    return mod.availability()


def resolve(op: str, backend: str, device: torch.device) -> str:
    """Turn ``backend`` (possibly "auto") into a backend name able to run on ``device``, or raise saying why."""
    if backend == "auto":
        preferred = "cpu" if device.type == "cpu" else "triton" if device.type == "cuda" else "reference"
        ok, why = availability(preferred) if preferred != "reference" else (True, "")
        if ok:
            return preferred
        if preferred not in _warned:
            _warned.add(preferred)
            warnings.warn(f"levit_kernels: backend '{preferred}' unavailable ({why}); "
                          f"'auto' falls back to the eager reference", RuntimeWarning, stacklevel=3)
        return "reference"
    if backend not in BACKENDS:
        raise ValueError(f"{op}: argument 'backend' must be one of {('auto',) + BACKENDS}, got {backend!r}")
    ok, why = availability(backend)
    if not ok:
        raise RuntimeError(f"{op}: backend '{backend}' is unavailable: {why}")
    want = _DEVICE[backend]
    if want is not None and device.type != want:
        raise ValueError(f"{op}: backend '{backend}' runs on {want} tensors, got tensors on {device}")
    return backend


def _has_op(name: str, op: str) -> bool:
    try:
        return hasattr(module(name), op)
    except ImportError:
        return False


def implementation(op: str, backend: str, device: torch.device):
    """The backend module that runs ``op`` for ``backend`` on ``device`` (resolved once per combination)."""
    key = (op, backend, device.type)
    impl = _resolved.get(key)
    if impl is None:
        name = resolve(op, backend, device)
        impl = module(name)
        if not hasattr(impl, op):  # a backend without this op (triton has no conv2d): "auto" runs the reference
            if backend != "auto":
                runs = [b for b in BACKENDS if _has_op(b, op)]
                raise ValueError(f"{op}: backend '{name}' does not support this op (backends that do: "
                                 f"{', '.join(runs)})")
            impl = module("reference")
        _resolved[key] = impl
    return impl


def report() -> dict[str, tuple[bool, str]]:
    """Availability of every backend, for ``levit-kernels info``."""
    return {name: availability(name) for name in BACKENDS}
