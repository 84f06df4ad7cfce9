"""Input validation shared by the public ops: every error names the op, the argument, what was expected and what
came."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from levit_kernels.reference import ACTIVATIONS

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def fail(op: str, arg: str, expected: str, got, exc=ValueError):
    raise exc(f"{op}: argument '{arg}' must be {expected}, got {got}")


def tensor(op: str, arg: str, t, ndim: Optional[int] = None, shape_doc: str = "") -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        fail(op, arg, "a torch.Tensor", type(t).__name__, TypeError)
    if t.dtype not in FLOAT_DTYPES:
        fail(op, arg, "a floating tensor (float32, float16, bfloat16 or float64)", t.dtype, TypeError)
    if ndim is not None and t.dim() != ndim:
        fail(op, arg, f"a {ndim}-D tensor {shape_doc}".rstrip(), f"shape {tuple(t.shape)}")
    return t


def dim_equals(op: str, arg: str, t: torch.Tensor, dim: int, expected: int, meaning: str):
    if t.shape[dim] != expected:
        fail(op, arg, f"of size {expected} in dim {dim} ({meaning})", f"shape {tuple(t.shape)}")


def same_dtype_device(op: str, named: Sequence[tuple[str, Optional[torch.Tensor]]]):
    ref_name, ref = named[0]
    for name, t in named[1:]:
        if t is None:
            continue
        if t.dtype != ref.dtype:
            fail(op, name, f"of the same dtype as '{ref_name}' ({ref.dtype})", t.dtype, TypeError)
        if t.device != ref.device:
            fail(op, name, f"on the same device as '{ref_name}' ({ref.device})", t.device)


def positive_int(op: str, arg: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        fail(op, arg, "a positive int", repr(value), TypeError if not isinstance(value, int) else ValueError)
    return value


def scale(op: str, value, key_dim: int) -> float:
    if value is None:
        return key_dim ** -0.5
    if isinstance(value, torch.Tensor) or isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(op, "scale", "a Python float or None", type(value).__name__, TypeError)
    if not math.isfinite(value):
        fail(op, "scale", "finite", repr(value))
    return float(value)


def activation(op: str, value, allowed=ACTIVATIONS):
    if not (value is None or isinstance(value, str)) or value not in allowed:
        fail(op, "activation", f"one of {allowed}", repr(value))
    return value


def non_negative_float(op: str, arg: str, value) -> float:
    if isinstance(value, torch.Tensor) or isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(op, arg, "a Python float", type(value).__name__, TypeError)
    if not math.isfinite(value) or value < 0:
        fail(op, arg, "finite and >= 0", repr(value))
    return float(value)


def int_pair(op: str, arg: str, value, least: int) -> tuple[int, int]:
    """An int or a pair of ints, each >= ``least`` → (h, w)."""
    items = tuple(value) if isinstance(value, (tuple, list, torch.Size)) else (value, value)
    if len(items) != 2 or any(isinstance(v, bool) or not isinstance(v, int) for v in items):
        fail(op, arg, "an int or a pair of ints", repr(value), TypeError)
    if min(items) < least:
        fail(op, arg, f"ints >= {least}", repr(value))
    return items
