"""Inference fusion: fold every BatchNorm of a LeViT (an EfficientFormer: and its LayerScales, see
:func:`levit.efficientformer.fuse`) into the Conv/Linear next to it.

Each layer folds its own BatchNorm (:mod:`levit.layers`): ConvBN (stem) → Conv2d with bias, LinearBN → Linear with
bias (BN after the op: :func:`levit_kernels.reference.fold_batchnorm`), ClassifierHead (a BNLinear: BN *before* the
Linear) → Linear, by :func:`fold_batchnorm_into_next`. :func:`fuse` is :meth:`levit.model.LeViT.fuse` with a type
check.
"""
from __future__ import annotations

from levit.layers import fold_batchnorm_into_next
from levit.model import LeViT

__all__ = ["fuse", "fold_batchnorm_into_next"]


def fuse(model: LeViT) -> LeViT:
    """Fold every BatchNorm of ``model`` in place, leave it in eval mode, and return it (idempotent); an
    EfficientFormer's LayerScales too (:func:`levit.efficientformer.fuse`).

    A fused model cannot be put back in training mode or load checkpoints: fuse a copy to keep a trainable one.
    """
    from levit.efficientformer import EfficientFormer

    if not isinstance(model, (LeViT, EfficientFormer)):
        raise TypeError(f"fuse: argument 'model' must be a levit.LeViT or levit.EfficientFormer, "
                        f"got {type(model).__name__}")
    return model.fuse()
