"""Eager PyTorch reference of every levit-kernels op: the single definition of each op's semantics.

The pure-PyTorch LeViT in ``levit/`` calls these functions in its forward, and every backend is tested against
them, so the model, the kernels and the tests cannot drift apart. No input validation happens here (the public
ops in :mod:`levit_kernels.ops` validate); the functions compute in the dtype they are given.
"""
from __future__ import annotations

import functools
import math
from typing import Optional

import torch
import torch.nn.functional as F

# Activations every op accepts: None, Hardswish (LeViT), GELU in its exact erf form (torch's default; EfficientFormer,
# T2T-ViT, vit-pytorch) and ReLU.
ACTIVATIONS = (None, "hardswish", "gelu", "relu")


def query_grid_side(resolution: int, stride: int) -> int:
    """Side of the query grid: a key grid side R subsampled every ``stride`` points, i.e. ceil(R / stride)."""
    return (resolution - 1) // stride + 1


def grid_sides(resolution) -> tuple[int, int]:
    """(Rh, Rw) of a key grid given as an int R (the R×R grid) or a pair (Rh, Rw)."""
    if isinstance(resolution, (tuple, list, torch.Size)):
        rh, rw = resolution
        return int(rh), int(rw)
    return int(resolution), int(resolution)


def grid(rh: int, rw: int):
    """The canonical form of an Rh×Rw grid: the int R when square (what a square model has always stored), else the
    pair (Rh, Rw)."""
    return rh if rh == rw else (rh, rw)


def query_grid(resolution, stride: int) -> tuple[int, int]:
    """(ceil(Rh / s), ceil(Rw / s)): the sides of the query grid, the key grid subsampled every ``stride`` points."""
    rh, rw = grid_sides(resolution)
    return query_grid_side(rh, stride), query_grid_side(rw, stride)


def grid_points(resolution) -> int:
    """Rh·Rw, the number of points (tokens, keys) of a grid given as an int or a pair."""
    rh, rw = grid_sides(resolution)
    return rh * rw


@functools.lru_cache(maxsize=64)
def _bias_index_cpu(rh: int, rw: int, stride: int) -> torch.Tensor:
    qh, qw = query_grid((rh, rw), stride)
    yq, xq = torch.meshgrid(torch.arange(qh) * stride, torch.arange(qw) * stride, indexing="ij")
    yk, xk = torch.meshgrid(torch.arange(rh), torch.arange(rw), indexing="ij")
    dy = (yq.reshape(-1, 1) - yk.reshape(1, -1)).abs()
    dx = (xq.reshape(-1, 1) - xk.reshape(1, -1)).abs()
    return dy * rw + dx


def attention_bias_index(resolution, stride: int = 1, device=None) -> torch.Tensor:
    """(Nq, Nk) int64 index into a head's row of the (H, Rh·Rw) bias table: ``|yi·s − yj|·Rw + |xi·s − xj|``, keys
    on the Rh×Rw grid (``resolution`` an int R for R×R, or (Rh, Rw)), queries on its stride-s subgrid. The table,
    viewed as (H, Rh, Rw), holds the bias of each offset (|Δy|, |Δx|)."""
    # Under tracing (torch.compile, torch.export and so torch.onnx.export) the cache would keep the traced (fake)
    # tensor and hand it to every later eager call, which then fails: measured, an ONNX export before the first
    # eager forward broke the float64 reference model after it. Traced code builds the index afresh.
    build = _bias_index_cpu.__wrapped__ if torch.compiler.is_compiling() else _bias_index_cpu
    idx = build(*grid_sides(resolution), int(stride))
    return idx if device is None else idx.to(device)


def gather_attention_bias(attention_biases: torch.Tensor, resolution, stride: int = 1) -> torch.Tensor:
    """(H, Rh·Rw) table → (H, Nq, Nk) bias added to the attention logits."""
    return attention_biases[:, attention_bias_index(resolution, stride, attention_biases.device)]


def resample_bias_table(table: torch.Tensor, source, target) -> torch.Tensor:
    """A (H, Sh·Sw) bias table over the source grid's offsets resampled to the target grid's (H, Th·Tw).

    The table is viewed as (H, Sh, Sw) — entry (dy, dx) is the bias of offset (|Δy|, |Δx|) — and interpolated
    bicubically (align_corners=False: output offset t samples source coordinate (t + ½)·S/T − ½, borders clamped,
    as timm and the official EfficientFormer resize their position tables), in float32 at least. At equal grids the
    table comes back unchanged (the same tensor)."""
    sh, sw = grid_sides(source)
    th, tw = grid_sides(target)
    if (sh, sw) == (th, tw):
        return table
    heads = table.shape[0]
    work = table.detach().to(torch.promote_types(table.dtype, torch.float32)).reshape(1, heads, sh, sw)
    out = F.interpolate(work, size=(th, tw), mode="bicubic", align_corners=False)
    return out.reshape(heads, th * tw).to(table.dtype)


def apply_activation(x: torch.Tensor, activation: Optional[str]) -> torch.Tensor:
    if activation is None:
        return x
    if activation == "hardswish":
        return F.hardswish(x)
    if activation == "gelu":
        return F.gelu(x)
    if activation == "relu":
        return F.relu(x)
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


def subsample_tokens(x: torch.Tensor, resolution, stride: int) -> torch.Tensor:
    """(B, Rh·Rw, C) tokens → (B, ceil(Rh/s)·ceil(Rw/s), C): the tokens on the stride-``s`` grid, row-major."""
    b, _, c = x.shape
    rh, rw = grid_sides(resolution)
    return x.reshape(b, rh, rw, c)[:, ::stride, ::stride].reshape(b, -1, c)


def biased_attention(q, k, v, attention_biases, resolution, stride=1, scale=None, activation=None, *,
                     gathered_bias: Optional[torch.Tensor] = None):
    """``act(softmax(scale·q·kᵀ + bias) · v)`` with the relative-position bias of LeViT, as (B, Nq, H·Dv).

    q (B, H, Nq, D), k (B, H, Nk, D), v (B, H, Nk, Dv) with keys on the Rh×Rw grid (``resolution`` R or (Rh, Rw)),
    queries on its stride-s subgrid; ``attention_biases`` (H, Rh·Rw). ``gathered_bias`` (H, Nq, Nk)
    lets the model pass its eval-time cache of ``gather_attention_bias(attention_biases, resolution, stride)``.
    """
    if scale is None:
        scale = q.shape[-1] ** -0.5
    if gathered_bias is None:
        gathered_bias = gather_attention_bias(attention_biases, resolution, stride)
    attn = (q @ k.transpose(-2, -1)) * scale + gathered_bias
    attn = attn.softmax(dim=-1)
    out = (attn @ v).transpose(1, 2)  # (B, Nq, H, Dv)
    out = out.reshape(out.shape[0], out.shape[1], -1)
    return apply_activation(out, activation)


def attention(q, k, v, scale=None, bias=None, activation=None):
    """``act(softmax(scale·q·kᵀ + bias) · v)`` as (B, Nq, H·Dv): plain multi-head softmax attention.

    q (B, H, Nq, D), k (B, H, Nk, D), v (B, H, Nk, Dv); ``bias`` None or a dense additive tensor broadcastable to
    (B, H, Nq, Nk) (size-1 batch/head dims allowed). The kernels tile keys with an online softmax and never form the
    Nq×Nk matrix; this reference does, so it is for checking, not for long sequences.
    """
    if scale is None:
        scale = q.shape[-1] ** -0.5
    attn = (q @ k.transpose(-2, -1)) * scale
    if bias is not None:
        attn = attn + bias
    attn = attn.softmax(dim=-1)
    out = (attn @ v).transpose(1, 2)  # (B, Nq, H, Dv)
    out = out.reshape(out.shape[0], out.shape[1], -1)
    return apply_activation(out, activation)


def layer_norm(x, weight=None, bias=None, eps=1e-5):
    """LayerNorm over the last dim of x: ``(x − mean) / sqrt(var + eps) · weight + bias`` (biased variance)."""
    return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)


def pool_mixer(x, layer_scale, pool_size=3):
    """EfficientFormer's Meta4D token mixer on a channels-last map x (B, H, W, C):
    ``x + layer_scale · (avgpool(x) − x)``, average pooling pool_size×pool_size, stride 1, padding pool_size // 2,
    borders averaged over the in-image points only (count_include_pad=False); layer_scale (C,). Returns (B, H, W, C)."""
    nchw = x.permute(0, 3, 1, 2)
    pooled = F.avg_pool2d(nchw, pool_size, 1, pool_size // 2, count_include_pad=False).permute(0, 2, 3, 1)
    return x + layer_scale * (pooled - x)


def linear(x, weight, bias, activation=None, residual=None):
    """``residual + act(x @ weightᵀ + bias)`` over the last dim of x."""
    y = apply_activation(F.linear(x, weight, bias), activation)
    return y if residual is None else residual + y


def mlp(x, w1, b1, w2, b2, activation="hardswish", residual=True):
    """``x + act(x @ w1ᵀ + b1) @ w2ᵀ + b2`` (the ``x +`` only when ``residual``)."""
    hidden = linear(x, w1, b1, activation)
    return linear(hidden, w2, b2, None, x if residual else None)


def conv2d(x, weight, bias=None, stride=1, padding=0, activation=None):
    """``act(conv2d(x, weight) + bias)`` over a channels-last map: x (B, H, W, C_in), weight (C_out, C_in, kh, kw)
    (PyTorch's layout), zero padding, ``stride`` / ``padding`` an int or a pair (h, w); returns (B, Ho, Wo, C_out),
    Ho = (H + 2·padding − kh) // stride + 1. The stem's and the downsampling layers' convolutions (BN folded)."""
    y = F.conv2d(x.permute(0, 3, 1, 2), weight, bias, stride, padding)
    return apply_activation(y, activation).permute(0, 2, 3, 1)


def shrink_attention(x, q_weight, q_bias, k, v, attention_biases, resolution, stride=2, scale=None,
                     activation=None):
    """LeViT's shrink attention: queries projected from the stride-``s`` tokens of x, then biased attention."""
    b = x.shape[0]
    heads, key_dim = k.shape[1], k.shape[-1]
    xs = subsample_tokens(x, resolution, stride)
    q = linear(xs, q_weight, q_bias).reshape(b, -1, heads, key_dim).transpose(1, 2)
    return biased_attention(q, k, v, attention_biases, resolution, stride, scale, activation)


def performer_features(x, w):
    """Positive random features of the Gaussian (softmax) kernel, T2T-ViT's performer token layer:
    ``exp(x·wᵀ − |x|²/2) / √m`` for x (B, N, D) and the frozen random matrix w (m, D), as (B, N, m).

    Computed in at least fp32 (float64 stays float64), as the official code does: the rows of w have norm √m, so
    the exponent reaches m/2 = 16 (at |x| = √m along a row) and exp would overflow fp16 (max 65504 ≈ e^11).
    """
    dtype = torch.promote_types(x.dtype, torch.float32)
    x = x.to(dtype)
    half_sq_norm = (x * x).sum(dim=-1, keepdim=True) / 2
    return torch.exp(x @ w.to(dtype).transpose(0, 1) - half_sq_norm) / math.sqrt(w.shape[0])


def performer_attention(q, k, v, w, eps=1e-8):
    """T2T-ViT's single-head linear attention with the random features φ of :func:`performer_features`:
    ``φ(q) · (φ(k)ᵀ v) / (φ(q) · Σₜ φ(kₜ) + eps)`` for q, k (B, N, D), v (B, N, Dv), w (m, D), as (B, N, Dv) in at
    least fp32. Linear in N: the N×N matrix φ(q)·φ(k)ᵀ is never formed, the products go through (m, Dv)."""
    qp, kp = performer_features(q, w), performer_features(k, w)
    kv = v.to(qp.dtype).transpose(1, 2) @ kp                  # (B, Dv, m)
    normaliser = qp @ kp.sum(dim=1).unsqueeze(-1)             # (B, N, 1)
    return (qp @ kv.transpose(1, 2)) / (normaliser + eps)


def fold_batchnorm(weight: torch.Tensor, bias: Optional[torch.Tensor], bn) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm that follows a Linear/Conv (weight (out, ...)) into its weight and bias."""
    inv_std = torch.rsqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.weight is not None else torch.ones_like(inv_std)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(inv_std)
    factor = gamma * inv_std
    folded_w = weight * factor.reshape(-1, *([1] * (weight.dim() - 1)))
    base = bias if bias is not None else torch.zeros_like(bn.running_mean)
    folded_b = (base - bn.running_mean) * factor + beta
    return folded_w.detach().clone(), folded_b.detach().clone()
