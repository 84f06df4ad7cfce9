"""Folding, in float64, for every family: BatchNorm into the layer before or after it, a LayerNorm's affine into
the projection that consumes it, a LayerScale into the projection that produces what it scales, several eval heads
into one. The results are float64 (weight, bias) pairs; the fused model casts them once to its dtype.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Optional

import torch
import torch.nn as nn

from levit_kernels.optimize.specs import Projection, fail
from levit_kernels.reference import fold_batchnorm

F64 = torch.float64


def as64(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if t is None else t.detach().to(F64)


def batchnorm64(bn, where: str) -> SimpleNamespace:
    """An eval BatchNorm's statistics and affine in float64 (what fold_batchnorm reads)."""
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
        fail(where, "a BatchNorm", type(bn).__name__ if bn is not None else "nothing")
    if bn.running_mean is None or bn.running_var is None:
        fail(where, "a BatchNorm with running statistics (track_running_stats=True)", "one without")
    n, device = bn.num_features, bn.running_mean.device

    def or_default(t, default):
        return as64(t) if t is not None else torch.full((n,), default, dtype=F64, device=device)

    return SimpleNamespace(weight=or_default(bn.weight, 1.0), bias=or_default(bn.bias, 0.0),
                           running_mean=as64(bn.running_mean), running_var=as64(bn.running_var), eps=bn.eps)


def batchnorm_after(weight: torch.Tensor, bias: Optional[torch.Tensor], bn, where: str):
    """(weight, bias) of a Linear/Conv (weight (out, ...)) followed by the eval BatchNorm ``bn``."""
    if bn.num_features != weight.shape[0]:
        fail(where, f"a BatchNorm over {weight.shape[0]} channels", f"{bn.num_features} channels")
    return fold_batchnorm(weight, bias, batchnorm64(bn, where))


def batchnorm_before(bn, weight: torch.Tensor, bias: Optional[torch.Tensor], where: str):
    """(weight, bias) of a Linear (weight (out, in)) whose input is normalised by the eval BatchNorm ``bn``:
    ``W·(x·s + t) + b = (W·diag(s))·x + (W·t + b)`` with ``s = γ/√(var+ε)``, ``t = β − mean·s``."""
    from levit.layers import fold_batchnorm_into_next

    if bn.num_features != weight.shape[1]:
        fail(where, f"a BatchNorm over {weight.shape[1]} channels", f"{bn.num_features} channels")
    bias = bias if bias is not None else weight.new_zeros(weight.shape[0])
    return fold_batchnorm_into_next(batchnorm64(bn, where), weight, bias)


def layernorm_affine(norm, where: str) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor], float]:
    """(γ, β, eps) of a LayerNorm over the last dim (γ/β None when it has no affine), float64."""
    if not isinstance(norm, nn.LayerNorm) or len(norm.normalized_shape) != 1:
        fail(where, "a LayerNorm over the channels (the last dim)", type(norm).__name__ if norm is not None
              else "nothing")
    return as64(norm.weight), as64(norm.bias), float(norm.eps)


def layernorm_before(norm, p: Projection, where: str) -> tuple[Projection, float]:
    """``p`` consuming LayerNorm ``norm``'s output, as (``p`` with the affine folded, eps): the fused model then
    runs the LayerNorm without affine. ``W·(n·γ + β) + b = (W·diag(γ))·n + (W·β + b)``."""
    gamma, beta, eps = layernorm_affine(norm, where)
    if norm.normalized_shape[0] != p.weight.shape[1]:
        fail(where, f"a LayerNorm over {p.weight.shape[1]} channels", f"{norm.normalized_shape[0]}")
    weight, bias = p.weight, p.bias
    if beta is not None:
        bias = bias + weight @ beta
    if gamma is not None:
        weight = weight * gamma[None, :]
    return Projection(weight, bias, p.where), eps


def layer_scale(module, where: str, channels: int) -> torch.Tensor:
    """The per-channel vector of a LayerScale module (timm's LayerScale / LayerScale2d: ``gamma``; the official
    layout's bare parameter is passed as a tensor), float64."""
    gamma = module if isinstance(module, torch.Tensor) else getattr(module, "gamma", None)
    if not isinstance(gamma, torch.Tensor) or gamma.numel() != channels:
        got = tuple(gamma.shape) if isinstance(gamma, torch.Tensor) else type(module).__name__
        fail(where, f"a LayerScale of {channels} channels (a 'gamma' vector)", f"{got}")
    return as64(gamma).reshape(channels)


def scaled(p: Projection, scale: torch.Tensor) -> Projection:
    """``p`` followed by a per-output-channel scale (a LayerScale): rows of W and b multiplied."""
    return Projection(p.weight * scale[:, None], p.bias * scale, p.where)


def merged_heads(heads: list[Projection]) -> Optional[Projection]:
    """Heads whose outputs the model averages, as one Linear: W = mean(Wᵢ), b = mean(bᵢ)."""
    if not heads:
        return None
    if any(h.weight.shape != heads[0].weight.shape for h in heads):
        fail(heads[-1].where, f"a head of shape {tuple(heads[0].weight.shape)} like {heads[0].where}",
              f"{tuple(heads[-1].weight.shape)}")
    return Projection(torch.stack([h.weight for h in heads]).mean(0), torch.stack([h.bias for h in heads]).mean(0),
                      " + ".join(h.where for h in heads))


def stacked(parts: list[Projection], where: str) -> Projection:
    """Projections of the same input, their outputs concatenated (e.g. separate q, k, v as one qkv)."""
    return Projection(torch.cat([p.weight for p in parts]), torch.cat([p.bias for p in parts]), where)
