"""CPU linear and mlp: the fused GEMM kernels of csrc/gemm, as the torch custom ops ``levit_kernels::linear`` and
``levit_kernels::mlp``.

Weights are packed into the kernels' panel layout on first use and cached in C++ against the weight tensor (its
identity, data pointer, shape, strides and version counter; see csrc/gemm/packed_weights.cpp), so later calls do no
packing and an in-place weight update is picked up by the next call.
"""
from __future__ import annotations

import torch

from levit_kernels.backends.cpu import _loader


def _require_float32(op: str, x: torch.Tensor):
    if x.dtype != torch.float32:
        raise TypeError(f"{op}: backend 'cpu' computes in float32 only, got tensors of dtype {x.dtype}")


def linear(x, weight, bias, activation, residual):
    _require_float32("linear", x)
    return torch.ops.levit_kernels.linear.default(x, weight, bias, activation, residual)


def mlp(x, w1, b1, w2, b2, activation, residual):
    _require_float32("mlp", x)
    return torch.ops.levit_kernels.mlp.default(x, w1, b1, w2, b2, activation, residual)


def cache_entries() -> int:
    """Live entries of the packed-weight cache (entries of weights that died are dropped first)."""
    return torch.ops.levit_kernels.gemm_cache_entries()


def clear_cache():
    torch.ops.levit_kernels.gemm_cache_clear()


def _register_fake_impls():
    """Shape-only implementations, so torch.compile / torch.export trace through the ops without running them."""

    @torch.library.register_fake("levit_kernels::linear")
    def _linear_fake(x, weight, bias, activation, residual):
        return x.new_empty(x.shape[:-1] + (weight.shape[0],))

    @torch.library.register_fake("levit_kernels::mlp")
    def _mlp_fake(x, w1, b1, w2, b2, activation, residual):
        return x.new_empty(x.shape[:-1] + (w2.shape[0],))


if _loader.availability()[0]:
    _register_fake_impls()
