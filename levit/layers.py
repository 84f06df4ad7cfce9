"""Conv/Linear + BatchNorm layers shared by every family in ``levit/``, each able to fold its own BatchNorm.

timm's style: a layer that owns a BatchNorm knows how to fold it (:meth:`fuse` returns the plain Conv2d/Linear that
computes the same in eval mode), and :func:`fuse_modules` swaps every such layer of a model for its fused form. So
a family's model only builds these layers, and fusion needs no table of the family's module types (and no import
of the model module, which is what used to tie model.py, fuse.py and checkpoint.py in a cycle).

- :class:`LinearBN`: Linear, then BatchNorm1d over the last (channel) dim of (..., C) tokens;
- :class:`ConvBN`: Conv2d, then BatchNorm2d;
- :class:`BNLinear`: BatchNorm1d, then Linear (the BN *precedes* the op: a classifier head).

The submodules are always ``.linear``/``.conv`` and ``.bn`` (the keys checkpoint loaders map onto). Nothing here is
specific to one family.
"""
from __future__ import annotations

import abc

import torch
import torch.nn as nn

from levit_kernels.reference import fold_batchnorm


class FoldsBatchNorm(nn.Module, abc.ABC):
    """A layer holding a BatchNorm that :meth:`fuse` folds away (in eval mode; running statistics are used)."""

    @abc.abstractmethod
    def fuse(self) -> nn.Module:
        """The plain layer (Conv2d/Linear with bias) computing what this layer computes in eval mode."""


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


class LinearBN(FoldsBatchNorm):
    """Linear (no bias unless ``bias``), then BatchNorm1d over the channel (last) dim of (..., C) tokens."""

    def __init__(self, in_features: int, out_features: int, bn_weight_init: float = 1.0, bias: bool = False):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        self.bn = nn.BatchNorm1d(out_features)
        nn.init.constant_(self.bn.weight, bn_weight_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x)
        return self.bn(y.reshape(-1, y.shape[-1])).reshape(y.shape)

    @torch.no_grad()
    def fuse(self) -> nn.Linear:
        return _linear_with(*fold_batchnorm(self.linear.weight, self.linear.bias, self.bn))


class ConvBN(FoldsBatchNorm):
    """Conv2d (no bias unless ``bias``), then BatchNorm2d."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, groups: int = 1,
                 bn_weight_init: float = 1.0, bias: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels)
        nn.init.constant_(self.bn.weight, bn_weight_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        conv = self.conv
        weight, bias = fold_batchnorm(conv.weight, conv.bias, self.bn)
        layer = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                          conv.dilation, conv.groups, device=weight.device, dtype=weight.dtype)
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
        return layer


class BNLinear(FoldsBatchNorm):
    """BatchNorm1d, then Linear (with bias), on (B, C) features."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(in_features)
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.bn(x))

    @torch.no_grad()
    def fuse(self) -> nn.Linear:
        return _linear_with(*fold_batchnorm_into_next(self.bn, self.linear.weight, self.linear.bias))


def fuse_modules(module: nn.Module) -> None:
    """Replace, in place, every :class:`FoldsBatchNorm` below ``module`` by its :meth:`~FoldsBatchNorm.fuse`."""
    for name, child in module.named_children():
        if isinstance(child, FoldsBatchNorm):
            setattr(module, name, child.fuse())
        else:
            fuse_modules(child)
