"""The optimized LeViT: every block is a chain of levit_kernels ops on weights prepared once.

- attention: ``linear(qkv)`` → ``biased_attention`` (q, k, v are strided views of the packed qkv output,
  Hardswish fused) → ``linear(proj, residual=x)``;
- shrink: ``linear(kv)`` → ``shrink_attention`` (query projection of the stride-s tokens inside) → ``linear(proj)``;
- MLP: the ``mlp`` op with the residual fused;
- head: token mean, then one ``linear`` (the two eval heads merged).

The ops are bound once (:meth:`OptimizedLeViT.bind`, a :class:`Runtime`): the public ops of
:mod:`levit_kernels.ops` (validation) for the check pass at optimize time, then the backend's functions directly,
so a forward does no per-call argument validation, weight preparation or backend lookup. A backend that packs
weights itself (``pack_weight``, ``linear_packed``, ``mlp_packed``: the cpu backend) gets its projections packed
once by :meth:`OptimizedLeViT.pack` (the unpacked copies are dropped). Weights are buffers, also held in plain
tuples that the forward reads.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import torch
import torch.nn as nn

from levit_kernels.optimize.recognize import (AttentionSpec, LeViTDescription, MLPSpec, Projection, ShrinkSpec)
from levit_kernels.optimize.stem import FusedStem

ACTIVATION = "hardswish"


class Runtime(NamedTuple):
    """The op functions the blocks call, positionally: ``linear(x, *weight_args, activation, residual)`` and
    ``mlp(x, w1, b1, w2, b2, activation, residual)`` where weight args are (weight, bias) — or, with ``packed``,
    (packed weight, out features, bias) and packed w1/w2 — and the two attentions as the public ops."""

    linear: Callable
    mlp: Callable
    biased_attention: Callable
    shrink_attention: Callable
    packed: bool = False


def runtime(backend_module) -> Runtime:
    """The functions of a backend module, its packed ones when it has them."""
    m = backend_module
    if hasattr(m, "pack_weight"):
        return Runtime(m.linear_packed, m.mlp_packed, m.biased_attention, m.shrink_attention, packed=True)
    return Runtime(m.linear, m.mlp, m.biased_attention, m.shrink_attention)


class _Prepared(nn.Module):
    """Holds weights prepared in the target dtype/device, contiguous, as buffers.

    ``packable``: the projections run through ``linear``/``mlp`` (their weights may be packed by the backend).
    """

    kind = ""
    packable: tuple[str, ...] = ()

    def __init__(self, where: str, dtype: torch.dtype, device: torch.device, **tensors: torch.Tensor):
        super().__init__()
        self.where = where
        for name, value in tensors.items():
            self.register_buffer(name, value.to(device=device, dtype=dtype).contiguous())
        self._packed = False
        self._set_arguments()

    @staticmethod
    def projection(prefix: str, p: Projection) -> dict[str, torch.Tensor]:
        return {f"{prefix}_weight": p.weight, f"{prefix}_bias": p.bias}

    def pack(self, pack_weight: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Replace each packable weight ``<name>_weight`` by the buffer ``<name>_weight_packed``."""
        for name in self.packable:
            weight = getattr(self, f"{name}_weight")
            delattr(self, f"{name}_weight")
            self.register_buffer(f"{name}_weight_packed", pack_weight(weight))
        self._packed = True
        self._set_arguments()

    def _weight(self, name: str) -> torch.Tensor:
        return getattr(self, f"{name}_weight_packed" if self._packed else f"{name}_weight")

    def _linear_arguments(self, name: str) -> tuple:
        bias = getattr(self, f"{name}_bias")
        return (self._weight(name), bias.shape[0], bias) if self._packed else (self._weight(name), bias)

    def _set_arguments(self) -> None:
        """Cache the tensors the forward passes in plain attributes (no nn.Module lookups per call)."""

    def bind(self, ops: Runtime) -> None:
        if ops.packed != self._packed:
            raise RuntimeError(f"{self.where}: the weights are {'' if self._packed else 'not '}packed but the ops "
                               f"take them {'packed' if ops.packed else 'unpacked'}")
        self._ops = ops

    def extra_repr(self) -> str:
        return self.where


class FusedAttention(_Prepared):
    kind = "attention"
    packable = ("qkv", "proj")

    def __init__(self, spec: AttentionSpec, dtype, device):
        self.heads, self.resolution, self.scale = spec.heads, spec.resolution, spec.scale
        self._per_head = 2 * spec.key_dim + spec.value_dim
        self._split = (spec.key_dim, spec.key_dim, spec.value_dim)
        super().__init__(spec.where, dtype, device, **self.projection("qkv", spec.qkv),
                         attention_biases=spec.attention_biases, **self.projection("proj", spec.proj))

    def _set_arguments(self) -> None:
        self._qkv, self._proj = self._linear_arguments("qkv"), self._linear_arguments("proj")
        self._table = self.attention_biases

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ops = self._ops
        b, n, _ = x.shape
        qkv = ops.linear(x, *self._qkv, None, None)
        q, k, v = qkv.view(b, n, self.heads, self._per_head).transpose(1, 2).split(self._split, dim=3)
        out = ops.biased_attention(q, k, v, self._table, self.resolution, 1, self.scale, ACTIVATION)
        return ops.linear(out, *self._proj, None, x)


class FusedShrink(_Prepared):
    kind = "shrink"
    packable = ("kv", "proj")  # the query projection runs inside shrink_attention, on the weight as it is

    def __init__(self, spec: ShrinkSpec, dtype, device):
        self.heads, self.resolution, self.stride, self.scale = spec.heads, spec.resolution, spec.stride, spec.scale
        self._per_head = spec.key_dim + spec.value_dim
        self._split = (spec.key_dim, spec.value_dim)
        super().__init__(spec.where, dtype, device, **self.projection("kv", spec.kv), **self.projection("q", spec.q),
                         attention_biases=spec.attention_biases, **self.projection("proj", spec.proj))

    def _set_arguments(self) -> None:
        self._kv, self._proj = self._linear_arguments("kv"), self._linear_arguments("proj")
        self._query = (self.q_weight, self.q_bias)
        self._table = self.attention_biases

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ops = self._ops
        b, n, _ = x.shape
        kv = ops.linear(x, *self._kv, None, None)
        k, v = kv.view(b, n, self.heads, self._per_head).transpose(1, 2).split(self._split, dim=3)
        out = ops.shrink_attention(x, *self._query, k, v, self._table, self.resolution, self.stride, self.scale,
                                   ACTIVATION)
        return ops.linear(out, *self._proj, None, None)


class FusedMLP(_Prepared):
    kind = "mlp"
    packable = ("fc1", "fc2")

    def __init__(self, spec: MLPSpec, dtype, device):
        super().__init__(spec.where, dtype, device, **self.projection("fc1", spec.fc1),
                         **self.projection("fc2", spec.fc2))

    def _set_arguments(self) -> None:
        self._weights = (self._weight("fc1"), self.fc1_bias, self._weight("fc2"), self.fc2_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._ops.mlp(x, *self._weights, ACTIVATION, True)


class FusedHead(_Prepared):
    """Token mean, then the merged classifier (or just the mean when the model has no classifier)."""

    kind = "head"

    def __init__(self, head: Optional[Projection], dtype, device):
        self.packable = ("head",) if head is not None else ()
        super().__init__(head.where if head is not None else "mean", dtype, device,
                         **(self.projection("head", head) if head is not None else {}))

    def _set_arguments(self) -> None:
        self._head = self._linear_arguments("head") if self.packable else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = x.mean(dim=1)
        if self._head is None:
            return features
        return self._ops.linear(features, *self._head, None, None)


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
        self.packed = False
        super().train(False)

    @property
    def image_size(self) -> int:
        """The largest square image side the model takes (224 for the paper's LeViTs)."""
        return self.image_sides[1]

    def bind(self, ops: Runtime) -> None:
        """Make every block call the functions of ``ops``."""
        for block in [*self.blocks, self.head]:
            block.bind(ops)

    def pack(self, pack_weight: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Pack every projection that runs through linear/mlp with the backend's ``pack_weight`` (once)."""
        for block in [*self.blocks, self.head]:
            block.pack(pack_weight)
        self.packed = True

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
        return (f"source={self.source!r}, backend={self.backend!r}, dtype={self.dtype}, device={self.device}, "
                f"packed={self.packed}")
