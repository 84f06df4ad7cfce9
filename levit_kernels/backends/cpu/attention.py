"""CPU attention ops: biased_attention and shrink_attention (the fused kernels of csrc/attention) and attention
(the flash kernel of csrc/flash), called as the torch custom ops ``torch.ops.levit_kernels.biased_attention`` /
``shrink_attention`` / ``attention`` (fake implementations below, so ``torch.compile(fullgraph=True)`` and
``torch.export`` trace through them).

Arguments arrive validated by :mod:`levit_kernels.ops`; this module only adds the backend's own limit (float32).
q, k, v may be any strided views (e.g. of a packed qkv tensor): the kernels read them in place.
"""
from __future__ import annotations

import torch

from levit_kernels.backends.cpu import _loader
from levit_kernels.reference import grid_sides, query_grid

_OPS = {}


def _op(name):
    """The OpOverload, looked up once (attribute lookups on torch.ops cost a few µs per call)."""
    try:
        return _OPS[name]
    except KeyError:
        _loader.extension()  # loads the library that registers the ops, or raises saying why it is unavailable
        _OPS[name] = getattr(torch.ops.levit_kernels, name).default
        return _OPS[name]


def _require_float32(op, t):
    if t.dtype is not torch.float32:
        raise TypeError(f"{op}: backend 'cpu' supports float32 tensors only, got {t.dtype} "
                        f"(use backend='reference' for other dtypes)")


def biased_attention(q, k, v, attention_biases, resolution, stride, scale, activation):
    _require_float32("biased_attention", q)
    return _op("biased_attention")(q, k, v, attention_biases, grid_sides(resolution), stride, scale, activation)


def shrink_attention(x, q_weight, q_bias, k, v, attention_biases, resolution, stride, scale, activation):
    _require_float32("shrink_attention", x)
    return _op("shrink_attention")(x, q_weight, q_bias, k, v, attention_biases, grid_sides(resolution), stride,
                                   scale, activation)


def attention(q, k, v, scale, bias, activation):
    _require_float32("attention", q)
    return _op("attention")(q, k, v, scale, bias, activation)


def _output_like(like, batch, resolution, stride, heads, value_dim):
    qh, qw = query_grid(resolution, stride)
    nq = qh * qw
    return like.new_empty((batch, nq, heads * value_dim))


def _register_fakes():
    @torch.library.register_fake("levit_kernels::biased_attention")
    def _(q, k, v, attention_biases, resolution, stride, scale, activation):
        return _output_like(q, k.shape[0], resolution, stride, k.shape[1], v.shape[3])

    @torch.library.register_fake("levit_kernels::shrink_attention")
    def _(x, q_weight, q_bias, k, v, attention_biases, resolution, stride, scale, activation):
        return _output_like(x, k.shape[0], resolution, stride, k.shape[1], v.shape[3])

    @torch.library.register_fake("levit_kernels::attention")
    def _(q, k, v, scale, bias, activation):
        b, h, nq, _ = q.shape
        return q.new_empty((b, nq, h * v.shape[3]))


if _loader.availability()[0]:
    _register_fakes()
