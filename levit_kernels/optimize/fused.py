"""The optimized LeViT: every block is a chain of levit_kernels ops on weights prepared once.

- attention: ``linear(qkv)`` → ``biased_attention`` (q, k, v are strided views of the packed qkv output,
  Hardswish fused) → ``linear(proj, residual=x)``;
- shrink: ``linear(kv)`` → ``shrink_attention`` (query projection of the stride-s tokens inside) → ``linear(proj)``;
- MLP: the ``mlp`` op with the residual fused;
- head: token mean, then one ``linear`` (the two eval heads merged).

The ops are bound once (:meth:`OptimizedLeViT.bind`): the public ops of :mod:`levit_kernels.ops` (validation) for
the check pass at optimize time, then the backend's functions directly, so a forward does no per-call argument
validation, weight preparation or backend lookup. Weights are buffers, kept also in plain tuples read per call.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn as nn

from levit_kernels.optimize.recognize import (AttentionSpec, LeViTDescription, MLPSpec, Projection, ShrinkSpec)
from levit_kernels.optimize.stem import FusedStem

ACTIVATION = "hardswish"


class _Prepared(nn.Module):
    """Holds prepared (target dtype/device, contiguous) weights as buffers and in ``self._w`` for the forward."""

    kind = ""

    def __init__(self, where: str, dtype: torch.dtype, device: torch.device, **tensors: torch.Tensor):
        super().__init__()
        self.where = where
        for name, value in tensors.items():
            self.register_buffer(name, value.to(device=device, dtype=dtype).contiguous())
        self._w = tuple(getattr(self, name) for name in tensors)

    @staticmethod
    def projection(prefix: str, p: Projection) -> dict[str, torch.Tensor]:
        return {f"{prefix}_weight": p.weight, f"{prefix}_bias": p.bias}

    def bind(self, ops) -> None:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return self.where


class FusedAttention(_Prepared):
    kind = "attention"

    def __init__(self, spec: AttentionSpec, dtype, device):
        super().__init__(spec.where, dtype, device, **self.projection("qkv", spec.qkv),
                         attention_biases=spec.attention_biases, **self.projection("proj", spec.proj))
        self.heads, self.resolution, self.scale = spec.heads, spec.resolution, spec.scale
        self._per_head = 2 * spec.key_dim + spec.value_dim
        self._split = (spec.key_dim, spec.key_dim, spec.value_dim)

    def bind(self, ops) -> None:
        self._linear, self._attention = ops.linear, ops.biased_attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv_w, qkv_b, table, proj_w, proj_b = self._w
        b, n, _ = x.shape
        qkv = self._linear(x, qkv_w, qkv_b, None, None)
        q, k, v = qkv.view(b, n, self.heads, self._per_head).transpose(1, 2).split(self._split, dim=3)
        out = self._attention(q, k, v, table, self.resolution, 1, self.scale, ACTIVATION)
        return self._linear(out, proj_w, proj_b, None, x)


class FusedShrink(_Prepared):
    kind = "shrink"

    def __init__(self, spec: ShrinkSpec, dtype, device):
        super().__init__(spec.where, dtype, device, **self.projection("kv", spec.kv), **self.projection("q", spec.q),
                         attention_biases=spec.attention_biases, **self.projection("proj", spec.proj))
        self.heads, self.resolution, self.stride, self.scale = spec.heads, spec.resolution, spec.stride, spec.scale
        self._per_head = spec.key_dim + spec.value_dim
        self._split = (spec.key_dim, spec.value_dim)

    def bind(self, ops) -> None:
        self._linear, self._shrink = ops.linear, ops.shrink_attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kv_w, kv_b, q_w, q_b, table, proj_w, proj_b = self._w
        b, n, _ = x.shape
        kv = self._linear(x, kv_w, kv_b, None, None)
        k, v = kv.view(b, n, self.heads, self._per_head).transpose(1, 2).split(self._split, dim=3)
        out = self._shrink(x, q_w, q_b, k, v, table, self.resolution, self.stride, self.scale, ACTIVATION)
        return self._linear(out, proj_w, proj_b, None, None)


class FusedMLP(_Prepared):
    kind = "mlp"

    def __init__(self, spec: MLPSpec, dtype, device):
        super().__init__(spec.where, dtype, device, **self.projection("fc1", spec.fc1),
                         **self.projection("fc2", spec.fc2))

    def bind(self, ops) -> None:
        self._mlp = ops.mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w1, b1, w2, b2 = self._w
        return self._mlp(x, w1, b1, w2, b2, ACTIVATION, True)


class FusedHead(_Prepared):
    """Token mean, then the merged classifier (or just the mean when the model has no classifier)."""

    kind = "head"

    def __init__(self, head: Optional[Projection], dtype, device):
        super().__init__(head.where if head is not None else "mean", dtype, device,
                         **(self.projection("head", head) if head is not None else {}))

    def bind(self, ops) -> None:
        self._linear = ops.linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = x.mean(dim=1)
        if not self._w:
            return features
        weight, bias = self._w
        return self._linear(features, weight, bias, None, None)


_FUSED = {"attention": FusedAttention, "shrink": FusedShrink, "mlp": FusedMLP}


class OptimizedLeViT(nn.Module):
    """A LeViT as fused ops: images (B, C, H, W) in, eval logits (the mean of the heads) out, in the images' dtype.

    Built by :func:`levit_kernels.optimize`; inference only, for one device and dtype (``.to()`` and ``train()``
    are refused: optimize the source model again instead).
    """

    def __init__(self, description: LeViTDescription, backend: str, dtype: torch.dtype, device: torch.device,
                 channels_last: bool = True):
        super().__init__()
        self.source, self.backend, self.dtype, self.device = description.source, backend, dtype, device
        self.in_channels = description.in_channels
        self.image_sides = description.image_sides
        self.stem = FusedStem(description.stem, dtype, device, channels_last)
        self.blocks = nn.ModuleList([_FUSED[spec.kind](spec, dtype, device) for spec in description.blocks])
        self.head = FusedHead(description.head, dtype, device)
        self.num_classes = description.head.weight.shape[0] if description.head is not None else None
        self.step_names = ["stem"] + [b.where for b in self.blocks] + ["head"]
        self.step_kinds = ["stem"] + [b.kind for b in self.blocks] + ["head"]
        self._steps: list[Callable] = [self.stem.forward] + [b.forward for b in self.blocks] + [self.head.forward]
        super().train(False)

    @property
    def image_size(self) -> int:
        """The largest square image side the model takes (224 for the paper's LeViTs)."""
        return self.image_sides[1]

    def bind(self, ops) -> None:
        """Make every block call ``ops`` (a namespace of linear, mlp, biased_attention, shrink_attention)."""
        for block in [*self.blocks, self.head]:
            block.bind(ops)

    def _check(self, images) -> None:
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != self.in_channels:
            self._bad_input(images)
        lo, hi = self.image_sides
        if not (lo <= images.shape[2] <= hi and lo <= images.shape[3] <= hi) or images.device != self.device:
            self._bad_input(images)

    def _bad_input(self, images):
        lo, hi = self.image_sides
        sides = f"{hi}" if lo == hi else f"{lo}..{hi}"
        got = (f"shape {tuple(images.shape)} on {images.device}" if isinstance(images, torch.Tensor)
               else type(images).__name__)
        raise ValueError(f"optimized LeViT: input must be images of shape (B, {self.in_channels}, H, W) with H, W in "
                         f"{sides} on {self.device}, got {got}")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self._check(images)
        x = images
        for step in self._steps:
            x = step(x)
        return x if x.dtype == images.dtype or not images.is_floating_point() else x.to(images.dtype)

    def trace(self, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(the tokens after the stem and after each block, logits) — what :func:`levit_kernels.verify` compares."""
        self._check(images)
        outputs, x = [], images
        for step in self._steps:
            x = step(x)
            outputs.append(x)
        return outputs[:-1], x

    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError("optimized LeViT: inference only (BatchNorms are folded); train the source model")
        return super().train(False)

    def _apply(self, fn, *args, **kwargs):
        raise RuntimeError(f"optimized LeViT: its weights are prepared for {self.device} in {self.dtype} and cannot "
                           f"be moved or cast; call levit_kernels.optimize(model, backend=..., dtype=...) on the "
                           f"source model instead")

    def extra_repr(self) -> str:
        return f"source={self.source!r}, backend={self.backend!r}, dtype={self.dtype}, device={self.device}"
