"""CPU layer_norm and pool_mixer: the kernels of csrc/layernorm and csrc/pool, as the torch custom ops
``levit_kernels::layer_norm`` and ``levit_kernels::pool_mixer`` (fake implementations below, so
``torch.compile(fullgraph=True)`` and ``torch.export`` trace through them).

Arguments arrive validated by :mod:`levit_kernels.ops`; this module only adds the backend's own limit (float32).
layer_norm reads row-strided x in place (e.g. a column slice of a wider tensor); pool_mixer reads any strided
(B, H, W, C) view whose channels are contiguous in place, and returns a contiguous (B, H, W, C) tensor.
"""
from __future__ import annotations

import torch

from levit_kernels.backends.cpu import _loader


def _require_float32(op: str, x: torch.Tensor):
    if x.dtype != torch.float32:
        raise TypeError(f"{op}: backend 'cpu' computes in float32 only, got tensors of dtype {x.dtype}")


def layer_norm(x, weight, bias, eps):
    _require_float32("layer_norm", x)
    return torch.ops.levit_kernels.layer_norm.default(x, weight, bias, eps)


def pool_mixer(x, layer_scale, pool_size):
    _require_float32("pool_mixer", x)
    return torch.ops.levit_kernels.pool_mixer.default(x, layer_scale, pool_size)


def _register_fake_impls():
    @torch.library.register_fake("levit_kernels::layer_norm")
    def _layer_norm_fake(x, weight, bias, eps):
        return x.new_empty(x.shape)

    @torch.library.register_fake("levit_kernels::pool_mixer")
    def _pool_mixer_fake(x, layer_scale, pool_size):
        return x.new_empty(x.shape)


if _loader.availability()[0]:
    _register_fake_impls()
