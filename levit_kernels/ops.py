"""Public ops: validate the arguments once, pick a backend, call it.

Semantics are defined by :mod:`levit_kernels.reference`; see each function there.
"""
from __future__ import annotations

from typing import Optional, Union

import torch

from levit_kernels import _checks as check
from levit_kernels import backends
from levit_kernels.reference import ACTIVATIONS, query_grid

# Largest pool_mixer window (the CPU kernel keeps a window's row table on the stack: csrc/pool/pool_kernel.h).
MAX_POOL_SIZE = 129


def _resolution(op, resolution) -> tuple[int, int]:
    """An int R (the R×R grid) or a pair (Rh, Rw) of positive ints → (Rh, Rw)."""
    if isinstance(resolution, (tuple, list, torch.Size)):
        if len(resolution) != 2:
            check.fail(op, "resolution", "an int R or a pair (Rh, Rw)", repr(resolution))
        return (check.positive_int(op, "resolution[0] (Rh)", resolution[0]),
                check.positive_int(op, "resolution[1] (Rw)", resolution[1]))
    r = check.positive_int(op, "resolution", resolution)
    return r, r


def _attention_operands(op, k, v, attention_biases, resolution, stride):
    """Check k, v, the bias table and the grid; return (B, H, Nq, D, (Rh, Rw), stride)."""
    check.tensor(op, "k", k, 4, "(B, H, Nk, D)")
    check.tensor(op, "v", v, 4, "(B, H, Nk, Dv)")
    check.tensor(op, "attention_biases", attention_biases, 2, "(H, Rh·Rw)")
    rh, rw = _resolution(op, resolution)
    stride = check.positive_int(op, "stride", stride)
    b, h, nk, d = k.shape
    grid = f"{rh}×{rw} grid of 'resolution'"
    if nk != rh * rw:
        check.fail(op, "k", f"of size Rh·Rw = {rh * rw} in dim 2 (keys on the {grid})",
                   f"shape {tuple(k.shape)}")
    check.dim_equals(op, "v", v, 0, b, "batch, as k")
    check.dim_equals(op, "v", v, 1, h, "heads, as k")
    check.dim_equals(op, "v", v, 2, nk, "keys, as k")
    check.dim_equals(op, "attention_biases", attention_biases, 0, h, "heads, as k")
    check.dim_equals(op, "attention_biases", attention_biases, 1, nk, f"table width Rh·Rw of the {grid}")
    if d == 0 or v.shape[3] == 0:
        check.fail(op, "k/v", "non-empty head dims", f"k {tuple(k.shape)}, v {tuple(v.shape)}")
    qh, qw = query_grid((rh, rw), stride)
    return b, h, qh * qw, d, (rh, rw), stride


def biased_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attention_biases: torch.Tensor,
                     resolution: Union[int, tuple[int, int]], stride: int = 1, scale: Optional[float] = None,
                     activation: Optional[str] = None, backend: str = "auto") -> torch.Tensor:
    """Attention with LeViT's relative-position bias, keys on the Rh×Rw grid (``resolution`` an int R or a pair
    (Rh, Rw)); returns (B, Nq, H·Dv). See reference.biased_attention."""
    op = "biased_attention"
    check.tensor(op, "q", q, 4, "(B, H, Nq, D)")
    b, h, nq, d, resolution, stride = _attention_operands(op, k, v, attention_biases, resolution, stride)
    check.dim_equals(op, "q", q, 0, b, "batch, as k")
    check.dim_equals(op, "q", q, 1, h, "heads, as k")
    qh, qw = query_grid(resolution, stride)
    check.dim_equals(op, "q", q, 2, nq, f"queries on the stride-{stride} {qh}×{qw} subgrid of the "
                     f"{resolution[0]}×{resolution[1]} grid of 'resolution'")
    check.dim_equals(op, "q", q, 3, d, "key dim, as k")
    check.same_dtype_device(op, [("q", q), ("k", k), ("v", v), ("attention_biases", attention_biases)])
    scale = check.scale(op, scale, d)
    activation = check.activation(op, activation)
    impl = backends.implementation(op, backend, q.device)
    return impl.biased_attention(q, k, v, attention_biases, resolution, stride, scale, activation)


def shrink_attention(x: torch.Tensor, q_weight: torch.Tensor, q_bias: torch.Tensor, k: torch.Tensor,
                     v: torch.Tensor, attention_biases: torch.Tensor, resolution: Union[int, tuple[int, int]],
                     stride: int = 2,
                     scale: Optional[float] = None, activation: Optional[str] = None,
                     backend: str = "auto") -> torch.Tensor:
    """LeViT's shrink attention (queries projected from the stride-s tokens of x); returns (B, Nq, H·Dv)."""
    op = "shrink_attention"
    check.tensor(op, "x", x, 3, "(B, Rh·Rw, C)")
    check.tensor(op, "q_weight", q_weight, 2, "(H·D, C)")
    check.tensor(op, "q_bias", q_bias, 1, "(H·D,)")
    b, h, _, d, resolution, stride = _attention_operands(op, k, v, attention_biases, resolution, stride)
    check.dim_equals(op, "x", x, 0, b, "batch, as k")
    check.dim_equals(op, "x", x, 1, resolution[0] * resolution[1],
                     f"tokens of the {resolution[0]}×{resolution[1]} grid of 'resolution'")
    check.dim_equals(op, "q_weight", q_weight, 0, h * d, "heads × key dim of k")
    check.dim_equals(op, "q_weight", q_weight, 1, x.shape[2], "channels of x")
    check.dim_equals(op, "q_bias", q_bias, 0, h * d, "heads × key dim of k")
    check.same_dtype_device(op, [("x", x), ("q_weight", q_weight), ("q_bias", q_bias), ("k", k), ("v", v),
                                 ("attention_biases", attention_biases)])
    scale = check.scale(op, scale, d)
    activation = check.activation(op, activation)
    impl = backends.implementation(op, backend, x.device)
    return impl.shrink_attention(x, q_weight, q_bias, k, v, attention_biases, resolution, stride, scale,
                                 activation)


def _attention_bias(op, bias, full_shape):
    """Check a dense additive bias against (B, H, Nq, Nk): torch broadcasting (fewer leading dims, size-1 dims)."""
    check.tensor(op, "bias", bias, None)
    names = ("batch", "heads", "queries", "keys")
    expected = f"broadcastable to (B, H, Nq, Nk) = {tuple(full_shape)}"
    if bias.dim() > 4:
        check.fail(op, "bias", expected, f"shape {tuple(bias.shape)}")
    lead = 4 - bias.dim()
    for i, size in enumerate(bias.shape):
        want = full_shape[lead + i]
        if size not in (1, want):
            check.fail(op, "bias", f"{expected}: size {want} or 1 in dim {i} ({names[lead + i]})",
                       f"shape {tuple(bias.shape)}")


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: Optional[float] = None,
              bias: Optional[torch.Tensor] = None, activation: Optional[str] = None,
              backend: str = "auto") -> torch.Tensor:
    """Multi-head softmax attention ``act(softmax(scale·q·kᵀ + bias) · v)`` over any number of keys (flash-style:
    keys tiled with an online softmax, no Nq×Nk matrix); returns (B, Nq, H·Dv). See reference.attention."""
    op = "attention"
    check.tensor(op, "q", q, 4, "(B, H, Nq, D)")
    check.tensor(op, "k", k, 4, "(B, H, Nk, D)")
    check.tensor(op, "v", v, 4, "(B, H, Nk, Dv)")
    b, h, nq, d = q.shape
    check.dim_equals(op, "k", k, 0, b, "batch, as q")
    check.dim_equals(op, "k", k, 1, h, "heads, as q")
    check.dim_equals(op, "k", k, 3, d, "key dim, as q")
    nk = k.shape[2]
    check.dim_equals(op, "v", v, 0, b, "batch, as q")
    check.dim_equals(op, "v", v, 1, h, "heads, as q")
    check.dim_equals(op, "v", v, 2, nk, "keys, as k")
    if d == 0 or v.shape[3] == 0 or nk == 0:
        check.fail(op, "q/k/v", "non-empty head dims and at least one key",
                   f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if bias is not None:
        _attention_bias(op, bias, (b, h, nq, nk))
    check.same_dtype_device(op, [("q", q), ("k", k), ("v", v), ("bias", bias)])
    scale = check.scale(op, scale, d)
    activation = check.activation(op, activation, ACTIVATIONS)
    impl = backends.implementation(op, backend, q.device)
    return impl.attention(q, k, v, scale, bias, activation)


def mlp(x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor,
        activation: Optional[str] = "hardswish", residual: bool = True, backend: str = "auto") -> torch.Tensor:
    """``x + act(x @ w1ᵀ + b1) @ w2ᵀ + b2`` over the last dim of x. See reference.mlp."""
    op = "mlp"
    check.tensor(op, "x", x, None)
    if x.dim() < 1:
        check.fail(op, "x", "a tensor of at least 1 dim (..., C)", f"shape {tuple(x.shape)}")
    c = x.shape[-1]
    check.tensor(op, "w1", w1, 2, "(hidden, C)")
    check.tensor(op, "b1", b1, 1, "(hidden,)")
    check.tensor(op, "w2", w2, 2, "(C_out, hidden)")
    check.tensor(op, "b2", b2, 1, "(C_out,)")
    check.dim_equals(op, "w1", w1, 1, c, "channels of x")
    check.dim_equals(op, "b1", b1, 0, w1.shape[0], "hidden width = w1.shape[0]")
    check.dim_equals(op, "w2", w2, 1, w1.shape[0], "hidden width = w1.shape[0]")
    check.dim_equals(op, "b2", b2, 0, w2.shape[0], "output width = w2.shape[0]")
    if not isinstance(residual, bool):
        check.fail(op, "residual", "a bool", type(residual).__name__, TypeError)
    if residual:
        check.dim_equals(op, "w2", w2, 0, c, "output width = channels of x, for the residual add")
    check.same_dtype_device(op, [("x", x), ("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2)])
    activation = check.activation(op, activation)
    impl = backends.implementation(op, backend, x.device)
    return impl.mlp(x, w1, b1, w2, b2, activation, residual)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], activation: Optional[str] = None,
           residual: Optional[torch.Tensor] = None, backend: str = "auto") -> torch.Tensor:
    """``residual + act(x @ weightᵀ + bias)`` over the last dim of x. See reference.linear."""
    op = "linear"
    check.tensor(op, "x", x, None)
    if x.dim() < 1:
        check.fail(op, "x", "a tensor of at least 1 dim (..., C)", f"shape {tuple(x.shape)}")
    check.tensor(op, "weight", weight, 2, "(C_out, C)")
    check.dim_equals(op, "weight", weight, 1, x.shape[-1], "channels of x")
    if bias is not None:
        check.tensor(op, "bias", bias, 1, "(C_out,)")
        check.dim_equals(op, "bias", bias, 0, weight.shape[0], "output width = weight.shape[0]")
    if residual is not None:
        check.tensor(op, "residual", residual, None)
        expected = tuple(x.shape[:-1]) + (weight.shape[0],)
        if tuple(residual.shape) != expected:
            check.fail(op, "residual", f"of the output's shape {expected}", f"shape {tuple(residual.shape)}")
    check.same_dtype_device(op, [("x", x), ("weight", weight), ("bias", bias), ("residual", residual)])
    activation = check.activation(op, activation)
    impl = backends.implementation(op, backend, x.device)
    return impl.linear(x, weight, bias, activation, residual)


def layer_norm(x: torch.Tensor, weight: Optional[torch.Tensor] = None, bias: Optional[torch.Tensor] = None,
               eps: float = 1e-5, backend: str = "auto") -> torch.Tensor:
    """LayerNorm over the last dim of x (..., C), rows of any stride; weight/bias (C,) optional. See
    reference.layer_norm."""
    op = "layer_norm"
    check.tensor(op, "x", x, None)
    if x.dim() < 1 or x.shape[-1] < 1:
        check.fail(op, "x", "a tensor of at least 1 dim with at least 1 channel (..., C)", f"shape {tuple(x.shape)}")
    c = x.shape[-1]
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None:
            check.tensor(op, name, t, 1, "(C,)")
            check.dim_equals(op, name, t, 0, c, "channels of x")
    eps = check.non_negative_float(op, "eps", eps)
    check.same_dtype_device(op, [("x", x), ("weight", weight), ("bias", bias)])
    impl = backends.implementation(op, backend, x.device)
    return impl.layer_norm(x, weight, bias, eps)


def pool_mixer(x: torch.Tensor, layer_scale: torch.Tensor, pool_size: int = 3,
               backend: str = "auto") -> torch.Tensor:
    """EfficientFormer's Meta4D token mixer ``x + layer_scale·(avgpool(x) − x)`` on a channels-last map x
    (B, H, W, C) (count_include_pad=False borders, stride 1); layer_scale (C,). See reference.pool_mixer."""
    op = "pool_mixer"
    check.tensor(op, "x", x, 4, "(B, H, W, C)")
    check.tensor(op, "layer_scale", layer_scale, 1, "(C,)")
    check.dim_equals(op, "layer_scale", layer_scale, 0, x.shape[3], "channels of x")
    pool_size = check.positive_int(op, "pool_size", pool_size)
    if pool_size % 2 == 0 or pool_size > MAX_POOL_SIZE:
        check.fail(op, "pool_size", f"an odd int in [1, {MAX_POOL_SIZE}]", repr(pool_size))
    check.same_dtype_device(op, [("x", x), ("layer_scale", layer_scale)])
    impl = backends.implementation(op, backend, x.device)
    return impl.pool_mixer(x, layer_scale, pool_size)


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
           stride: Union[int, tuple[int, int]] = 1, padding: Union[int, tuple[int, int]] = 0,
           activation: Optional[str] = None, backend: str = "auto") -> torch.Tensor:
    """``act(conv2d(x, weight) + bias)`` on a channels-last map x (B, H, W, C_in) with weight (C_out, C_in, kh, kw),
    zero padding; returns (B, Ho, Wo, C_out). The stem and downsampling convolutions. See reference.conv2d.
    Backends: reference (F.conv2d: cuDNN on GPUs) and cpu; triton has no convolution (the GPU stem keeps cuDNN)."""
    op = "conv2d"
    check.tensor(op, "x", x, 4, "(B, H, W, C_in)")
    check.tensor(op, "weight", weight, 4, "(C_out, C_in, kh, kw)")
    check.dim_equals(op, "weight", weight, 1, x.shape[3], "channels of x")
    if min(weight.shape) < 1:
        check.fail(op, "weight", "non-empty (C_out, C_in, kh, kw)", f"shape {tuple(weight.shape)}")
    if bias is not None:
        check.tensor(op, "bias", bias, 1, "(C_out,)")
        check.dim_equals(op, "bias", bias, 0, weight.shape[0], "output channels = weight.shape[0]")
    stride = check.int_pair(op, "stride", stride, 1)
    padding = check.int_pair(op, "padding", padding, 0)
    kh, kw = weight.shape[2:]
    if x.shape[1] + 2 * padding[0] < kh or x.shape[2] + 2 * padding[1] < kw:
        check.fail(op, "x", f"a map with H + 2·padding >= {kh} and W + 2·padding >= {kw} (the kernel size; "
                   f"padding {padding})", f"shape {tuple(x.shape)}")
    check.same_dtype_device(op, [("x", x), ("weight", weight), ("bias", bias)])
    activation = check.activation(op, activation)
    impl = backends.implementation(op, backend, x.device)
    return impl.conv2d(x, weight, bias, stride, padding, activation)
