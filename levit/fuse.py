"""Inference fusion: fold every BatchNorm of a LeViT into the Conv/Linear next to it.

- ConvBN (stem) → Conv2d with bias; LinearBN → Linear with bias (BN after the op:
  :func:`levit_kernels.reference.fold_batchnorm`);
- ClassifierHead (BN *before* the Linear) → Linear, by :func:`fold_batchnorm_into_next`.

The attention modules stay: they still call the same reference attention with their (now Linear) projections.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from levit_kernels.reference import fold_batchnorm
from levit.model import ClassifierHead, ConvBN, LeViT, LinearBN


def fold_batchnorm_into_next(bn: nn.modules.batchnorm._BatchNorm, weight: torch.Tensor,
                             bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm that *precedes* a Linear (weight (out, in)) into that Linear.

    ``W·(x·s + t) + b = (W·diag(s))·x + (W·t + b)`` with ``s = γ/√(var+ε)``, ``t = β − mean·s``.
    """
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    return (weight * scale[None, :]).detach().clone(), (weight @ shift + bias).detach().clone()


def _linear_with(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    return layer


def fused_linear(module: LinearBN) -> nn.Linear:
    return _linear_with(*fold_batchnorm(module.linear.weight, None, module.bn))


def fused_conv(module: ConvBN) -> nn.Conv2d:
    conv = module.conv
    weight, bias = fold_batchnorm(conv.weight, None, module.bn)
    layer = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    return layer


def fused_head(module: ClassifierHead) -> nn.Linear:
    return _linear_with(*fold_batchnorm_into_next(module.bn, module.linear.weight, module.linear.bias))


_FUSERS = {LinearBN: fused_linear, ConvBN: fused_conv, ClassifierHead: fused_head}


def _replace_children(parent: nn.Module) -> None:
    for name, child in parent.named_children():
        fuser = _FUSERS.get(type(child))
        if fuser is not None:
            setattr(parent, name, fuser(child))
        else:
            _replace_children(child)


@torch.no_grad()
def fuse(model: LeViT) -> LeViT:
    """Fold every BatchNorm of ``model`` in place, leave it in eval mode, and return it (idempotent); an
    EfficientFormer's LayerScales too (:func:`levit.efficientformer.fuse`).

    A fused model cannot be put back in training mode or load checkpoints: fuse a copy to keep a trainable one.
    """
    from levit.efficientformer import EfficientFormer

    if isinstance(model, EfficientFormer):
        return model.fuse()
    if not isinstance(model, LeViT):
        raise TypeError(f"fuse: argument 'model' must be a levit.LeViT or levit.EfficientFormer, "
                        f"got {type(model).__name__}")
    if model.fused:
        return model
    model.eval()
    _replace_children(model)
    model.fused = True
    return model
