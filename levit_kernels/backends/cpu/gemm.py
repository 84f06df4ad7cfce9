"""CPU linear and mlp: the fused GEMM kernels of csrc/gemm, as the torch custom ops ``levit_kernels::linear`` and
``levit_kernels::mlp``.

Weights are packed into the kernels' panel layout on first use and cached in C++ against the weight tensor (its
identity, data pointer, shape, strides and version counter; see csrc/gemm/packed_weights.cpp), so later calls do no
packing and an in-place weight update is picked up by the next call.

Callers that own their weights (a model being optimized) can instead pack once with :func:`pack_weight` and call
:func:`linear_packed` / :func:`mlp_packed`: no cache lookup per call, and no second copy kept by the cache. A packed
weight belongs to the ISA active when it was packed (its panel width); using it under another raises.
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


def pack_weight(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` (N, K) float32 in the kernels' layout for the active ISA: (ceil(N / nr), K, nr)."""
    _require_float32("pack_weight", weight)
    return torch.ops.levit_kernels.gemm_pack.default(weight)


def linear_packed(x, packed_weight, out_features: int, bias=None, activation=None, residual=None):
    """:func:`linear` with ``weight`` given as ``pack_weight(weight)`` (``out_features`` = weight.shape[0])."""
    _require_float32("linear_packed", x)
    return torch.ops.levit_kernels.linear_packed.default(x, packed_weight, out_features, bias, activation, residual)


def mlp_packed(x, packed_w1, b1, packed_w2, b2, activation="hardswish", residual=True):
    """:func:`mlp` with ``w1``/``w2`` given as ``pack_weight(w1)``/``pack_weight(w2)``."""
    _require_float32("mlp_packed", x)
    return torch.ops.levit_kernels.mlp_packed.default(x, packed_w1, b1, packed_w2, b2, activation, residual)


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

    @torch.library.register_fake("levit_kernels::gemm_pack")
    def _pack_fake(weight):
        nr = torch.ops.levit_kernels.gemm_panel_width()
        return weight.new_empty(((weight.shape[0] + nr - 1) // nr, weight.shape[1], nr))

    @torch.library.register_fake("levit_kernels::linear_packed")
    def _linear_packed_fake(x, packed_weight, out_features, bias, activation, residual):
        return x.new_empty(x.shape[:-1] + (out_features,))

    @torch.library.register_fake("levit_kernels::mlp_packed")
    def _mlp_packed_fake(x, packed_w1, b1, packed_w2, b2, activation, residual):
        return x.new_empty(x.shape[:-1] + (b2.shape[0],))


if _loader.availability()[0]:
    _register_fake_impls()
