"""``levit_kernels.optimize(model)``: a drop-in model whose blocks run the fused levit_kernels ops.

- :mod:`~levit_kernels.optimize.families`: one adapter per model family (the ``FAMILIES`` table), each recognising
  its models by structure and describing them as block specs (:mod:`~levit_kernels.optimize.specs`), folded by
  :mod:`~levit_kernels.optimize.fold`; :mod:`~levit_kernels.optimize.recognize`: the helpers and the dispatcher;
- :mod:`~levit_kernels.optimize.fused` and :mod:`~levit_kernels.optimize.stem`: the optimized model;
- :mod:`~levit_kernels.optimize.verify`: end-to-end equivalence against the eager model.
"""
from __future__ import annotations

from typing import Union

import torch
import torch.nn as nn

from levit_kernels import backends, ops
from levit_kernels.optimize.fused import OPS, OptimizedLeViT, Runtime, runtime
from levit_kernels.optimize.recognize import describe
from levit_kernels.optimize.specs import ModelDescription, UnrecognizedModelError

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "half": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float64": torch.float64}
# What each backend computes in (the reference computes in any floating dtype).
BACKEND_DTYPES = {"cpu": (torch.float32,), "triton": (torch.float32, torch.float16, torch.bfloat16)}


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    tensors = [t for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()]
    if not tensors:
        raise ValueError("optimize: the model has no floating-point weights")
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        raise ValueError(f"optimize: the model's weights are spread over devices {sorted(map(str, devices))}; "
                         f"move it to one device first")
    return tensors[0].device, tensors[0].dtype


def resolve_dtype(dtype: Union[None, str, torch.dtype], default: torch.dtype) -> torch.dtype:
    if dtype is None:
        return default
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    raise ValueError(f"optimize: argument 'dtype' must be None, torch.float32, torch.float16 or torch.bfloat16 "
                     f"(or their names), got {dtype!r}")


def _check_backend_dtype(backend: str, dtype: torch.dtype) -> None:
    allowed = BACKEND_DTYPES.get(backend)
    if allowed is not None and dtype not in allowed:
        hint = ("; low-precision dtypes are for the triton backend on a GPU" if backend == "cpu" else "")
        raise ValueError(f"optimize: backend '{backend}' computes in {', '.join(map(str, allowed))} only, got "
                         f"dtype={dtype}{hint}")


def checked_ops() -> Runtime:
    """The public ops (which validate every argument) on the reference backend, called like a backend's."""
    def bound(name):
        op = getattr(ops, name, None)  # None: no such public op in this build (the model needing it is refused)
        return None if op is None else (lambda *args: op(*args, backend="reference"))

    return Runtime(*[bound(name) for name in OPS])


def _check_ops(description: ModelDescription, ops_of: Runtime, backend: str) -> None:
    missing = sorted(name for name in description.ops_needed() if getattr(ops_of, name) is None)
    if missing:
        raise ValueError(f"optimize: {description.source} needs the op(s) {', '.join(missing)}, which backend "
                         f"'{backend}' does not provide in this build")


def optimize(model: nn.Module, backend: str = "auto", dtype: Union[None, str, torch.dtype] = None, *,
             channels_last: bool = True) -> OptimizedLeViT:
    """A new module computing ``model``'s eval outputs with the fused ops; ``model`` is left untouched.

    ``model``: a model in eval mode of one of the families of :data:`levit_kernels.optimize.families.FAMILIES`
    — :class:`levit.LeViT` (fused or not), timm's ``Levit`` / ``LevitDistilled`` (``levit_*`` linear or
    ``levit_conv_*`` conv kind), ... — recognised by its structure.
    ``backend``: "auto" (cpu on CPU, triton on GPU, else the reference with a warning), "cpu", "triton" or
    "reference". ``dtype``: the compute dtype (default: the model's); fp16/bf16 are for GPUs (the cpu backend is
    float32 only). The optimized model takes the images the source takes and returns logits in their dtype.

    Every BatchNorm is folded, both heads merged into one Linear, weights cast, laid out and (cpu backend) packed
    once; packed weights belong to the CPU ISA active at optimize time. One batch-1 pass through the validating
    public ops checks every call's arguments here, so the forward calls the backend functions directly.
    Raises ValueError for training mode, an unrecognised structure (:class:`UnrecognizedModelError`), a dtype the
    backend cannot compute in, or an unavailable backend.
    """
    return optimize_described(model, backend, dtype, channels_last)[0]


def optimize_described(model: nn.Module, backend: str = "auto", dtype: Union[None, str, torch.dtype] = None,
                       channels_last: bool = True) -> tuple[OptimizedLeViT, ModelDescription]:
    """:func:`optimize`, also returning the recognised description of ``model`` (for :func:`verify`)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"optimize: argument 'model' must be a torch.nn.Module, got {type(model).__name__}")
    device, model_dtype = _model_device_dtype(model)
    dtype = resolve_dtype(dtype, model_dtype)
    name = backends.resolve("optimize", backend, device)
    _check_backend_dtype(name, dtype)
    description = describe(model)
    backend_module = backends.module(name)
    ops_of_backend, checking = runtime(backend_module), checked_ops()
    _check_ops(description, checking, "reference")
    _check_ops(description, ops_of_backend, name)
    optimized = OptimizedLeViT(description, name, dtype, device, channels_last)
    height, width = optimized.image_hw
    # The check pass runs the reference backend: the public ops validate the same arguments for every backend, and
    # nothing is compiled, autotuned or cached for a batch of one.
    with torch.no_grad():  # not inference_mode: reference.py caches index tensors made on first use
        optimized.bind(checking)
        optimized(torch.zeros(1, optimized.in_channels, height, width, device=device, dtype=dtype))
    if ops_of_backend.packed:
        optimized.pack(backend_module.pack_weight)
    optimized.bind(ops_of_backend)
    return optimized, description


__all__ = ["optimize", "OptimizedLeViT", "ModelDescription", "UnrecognizedModelError", "describe", "DTYPES"]
