"""EfficientFormer's blocks as specs, from parts an EfficientFormer adapter (this project's, timm's) has read out of
its own module names: not a family (it is not in the table), the folding both share.

- Meta4D: ``x + ls1·(pool(x) − x)`` → :class:`PoolSpec` (ls1 is the mixer's scale: it multiplies ``pool(x) − x``,
  so no projection can take it); ``x + ls2·MLP(x)`` → :class:`MLPSpec` with BN already folded and ls2 folded into
  fc2, residual fused;
- Meta3D: ``x + ls1·proj(attn(qkv(LN₁(x))))`` → :class:`AttentionSpec` with LN₁ run without affine (its affine
  folded into qkv), no activation, ls1 folded into proj; ``x + ls2·fc2(act(fc1(LN₂(x))))`` → :class:`MLPSpec` with
  LN₂'s affine folded into fc1 and ls2 into fc2;
- head: LN's affine folded into every head (the mean over tokens commutes with it), then the heads merged.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from levit_kernels.optimize import fold, recognize as r
from levit_kernels.optimize.specs import BlockSpec, HeadSpec, PoolSpec, Projection, Tap

ACTIVATIONS = ("gelu", "hardswish", "relu")


def meta4d(where: str, ls1: torch.Tensor, pool_size: int, side: int, fc1: Projection, fc2: Projection,
           ls2: Optional[torch.Tensor], activation: str, pool_tap: Tap, mlp_tap: Tap) -> list[BlockSpec]:
    if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1 or pool_size % 2 == 0:
        r.fail(where, "an odd positive pool size", repr(pool_size))
    fc2 = fc2 if ls2 is None else fold.scaled(fc2, ls2)
    return [PoolSpec(f"{where}.token_mixer", ls1, pool_size, side, pool_tap),
            r.mlp(f"{where}.mlp", fc1, fc2, mlp_tap, activation)]


def meta3d(where: str, attn: nn.Module, geometry: tuple, norm1, ls1: Optional[torch.Tensor], norm2, fc1: Projection,
           fc2: Projection, ls2: Optional[torch.Tensor], activation: str, attn_tap: Tap,
           mlp_tap: Tap) -> list[BlockSpec]:
    aw = f"{where}.token_mixer"
    qkv, eps1 = fold.layernorm_before(norm1, r.projection(r.child(attn, "qkv", aw, "a qkv Linear"), f"{aw}.qkv"),
                                      f"{where}.norm1")
    proj = r.projection(r.child(attn, "proj", aw, "a proj Linear"), f"{aw}.proj")
    proj = proj if ls1 is None else fold.scaled(proj, ls1)
    fc1, eps2 = fold.layernorm_before(norm2, fc1, f"{where}.norm2")
    fc2 = fc2 if ls2 is None else fold.scaled(fc2, ls2)
    return [r.attention(aw, qkv, proj, geometry, attn_tap, activation=None, norm_eps=eps1),
            r.mlp(f"{where}.mlp", fc1, fc2, mlp_tap, activation, norm_eps=eps2)]


def head(norm, heads: list[Projection]) -> HeadSpec:
    """LayerNorm ``norm`` → token mean → the mean of ``heads``: the affine folded into each head, then merged. Without
    a classifier the pooled features keep the affine as a diagonal projection."""
    if not heads:
        gamma, beta, _ = fold.layernorm_affine(norm, "norm")
        channels = norm.normalized_shape[0]
        gamma = gamma if gamma is not None else torch.ones(channels, dtype=torch.float64)
        beta = beta if beta is not None else torch.zeros(channels, dtype=torch.float64)
        heads, merged = [Projection(torch.diag(gamma), beta, "norm")], 0
    else:
        heads, merged = [fold.layernorm_before(norm, h, "norm")[0] for h in heads], len(heads)
    return HeadSpec(fold.merged_heads(heads), merged, fold.layernorm_affine(norm, "norm")[2])


def layer_scale_or_none(module, where: str, channels: int) -> Optional[torch.Tensor]:
    """A LayerScale's vector; None where it was already folded (an Identity)."""
    return None if isinstance(module, nn.Identity) else fold.layer_scale(module, where, channels)
