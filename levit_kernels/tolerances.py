"""Accuracy contract of every kernel, in one place.

Errors are measured as ``max|out - ref| / max(max|ref|, scale)`` against a float64 reference computed from the same
inputs (see :func:`max_rel_error`): relative to the output's scale, so rows whose values pass near zero do not
inflate it, and never to an absolute floor, so the tolerance means the same at every magnitude of the operands (an
all-zero output is wrong by 1 whether the outputs are 1e-3 or 1e3). ``scale`` is the magnitude of the terms behind
the outputs (the largest sum of |terms| over any output, which the tests compute per op): rounding is relative to
that, not to an output that cancellation made small. Tests, ``verify`` and the benchmarks' sanity checks all read
these numbers.
"""
from __future__ import annotations

import torch

# Kernel outputs against the float64 reference, per input dtype.
KERNEL_RTOL = {
    torch.float32: 1e-5,
    torch.float16: 2e-3,   # fp16 storage of inputs/outputs (eps 2^-11 ≈ 4.9e-4), fp32 accumulation
    torch.bfloat16: 1.6e-2,  # bf16 storage (eps 2^-8 ≈ 3.9e-3), fp32 accumulation
    torch.float64: 1e-12,
}

# Triton on a GPU computes fp32 dots in TF32 (10-bit mantissa) unless told otherwise; the interpreter is exact.
TRITON_TF32_RTOL = 2e-3

# Attention with large logits (see large_logit_rtol): multiple of ε_fp32 · |logit| allowed on top of KERNEL_RTOL.
LARGE_LOGIT_ULPS = 8.0

# Whole-model fp32 logits: optimized vs eager reference (issue contract).
MODEL_FP32_RTOL = 1e-4
# Low precision: the optimized model's error may be at most this multiple of the eager low-precision model's
# error, both measured against float64.
MODEL_LOWP_ERROR_RATIO = 2.0
# BN folding (levit.fuse) against the unfused fp32 model.
FUSE_FP32_RTOL = 1e-5


def max_rel_error(out: torch.Tensor, ref: torch.Tensor, scale: float = 0.0) -> float:
    """``max|out - ref| / max(max|ref|, scale)`` in float64; NaN/inf anywhere in either gives inf.

    ``scale``: the magnitude of the terms that formed the outputs (e.g. max over outputs of Σ|wᵢ·xᵢ| for a
    product), for outputs that may cancel far below it. Where both are 0 only an exact match has error 0.
    """
    out64, ref64 = out.detach().to(torch.float64), ref.detach().to(torch.float64)
    if out64.shape != ref64.shape:
        raise ValueError(f"shape mismatch: out {tuple(out64.shape)} vs ref {tuple(ref64.shape)}")
    if out64.numel() == 0:
        return 0.0
    if not (torch.isfinite(out64).all() and torch.isfinite(ref64).all()):
        return float("inf")
    diff = (out64 - ref64).abs().max().item()
    scale = max(ref64.abs().max().item(), float(scale))
    if scale == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / scale


def large_logit_rtol(dtype: torch.dtype, logit_magnitude: float) -> float:
    """Attention whose logits reach ±L (|bias| + scale·Σ|q·k|): the kernels form logits in fp32, so each carries an
    absolute rounding error of a few ε_fp32·L, which the softmax passes on as that relative error of its weights."""
    return kernel_rtol(dtype) + LARGE_LOGIT_ULPS * torch.finfo(torch.float32).eps * logit_magnitude


def kernel_rtol(dtype: torch.dtype) -> float:
    try:
        return KERNEL_RTOL[dtype]
    except KeyError:
        raise TypeError(f"no tolerance defined for dtype {dtype}") from None
