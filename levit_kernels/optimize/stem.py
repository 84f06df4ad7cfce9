"""The stem of the optimized model (and the convolutions between stages): PyTorch convolutions with BatchNorm folded
and the unit's activation fused or applied in place.

Measured on this project's Zen 3 machine (1 thread, process CPU time; LeViT-128/256/384 stems, batch 16 / 1):
channels-last runs the convolutions 1.25-1.6× / 1.1-1.9× faster than NCHW, and the last convolution's NHWC output
already is the (B, N, C) token tensor, so flattening to tokens costs no copy. On CPU, oneDNN's fused
convolution + Hardswish (``torch.ops.mkldnn._convolution_pointwise``, what inductor emits) adds 0-14% over
conv + in-place Hardswish; it is used when this torch build has it and it agrees with F.conv2d on a probe, for
each activation oneDNN fuses (Hardswish, ReLU; none); GELU runs in place after the convolution.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from levit_kernels.optimize.specs import Conv

_IN_PLACE: dict[Optional[str], Callable] = {
    None: lambda x: x,
    "hardswish": lambda x: F.hardswish(x, inplace=True),
    "relu": lambda x: F.relu(x, inplace=True),
    "gelu": F.gelu,
}
_ONEDNN = {None: "none", "hardswish": "hardswish", "relu": "relu"}  # the activations oneDNN's conv fuses here


def conv_then_activation(x, weight, bias, stride, padding, activation):
    return _IN_PLACE[activation](F.conv2d(x, weight, bias, stride, padding))


def _onednn_conv(x, weight, bias, stride, padding, activation):
    return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, list(padding), list(stride), [1, 1], 1,
                                                   _ONEDNN[activation], [], "")


@lru_cache(maxsize=None)
def _onednn_agrees(activation: Optional[str]) -> bool:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 9, 9, generator=gen).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(8, 3, 3, 3, generator=gen).contiguous(memory_format=torch.channels_last)
    bias = torch.randn(8, generator=gen)
    try:
        with torch.no_grad():
            fused = _onednn_conv(x, weight, bias, (2, 2), (1, 1), activation)
    except (AttributeError, RuntimeError):  # a torch build without the op, or one that rejects it
        return False
    return torch.allclose(fused, conv_then_activation(x, weight, bias, (2, 2), (1, 1), activation), atol=1e-5)


def fused_conv_available(dtype: torch.dtype, device: torch.device, activation: Optional[str] = "hardswish") -> bool:
    """Whether oneDNN's conv + ``activation`` runs here and matches F.conv2d + the activation (checked on a probe)."""
    if device.type != "cpu" or dtype != torch.float32 or not torch.backends.mkldnn.is_available():
        return False
    return activation in _ONEDNN and _onednn_agrees(activation)


class ConvLayers(nn.Module):
    """Convolutions (each then its activation) over a (B, C, H, W) map in the model's dtype, weights prepared once."""

    def __init__(self, convs: list[Conv], dtype: torch.dtype, device: torch.device, channels_last: bool = True,
                 fused_conv: Optional[bool] = None):
        super().__init__()
        self.channels_last = channels_last
        self.dtype = dtype
        self._memory_format = torch.channels_last if channels_last else torch.contiguous_format
        want_fused = channels_last if fused_conv is None else fused_conv
        layers, fused = [], []
        for i, conv in enumerate(convs, start=1):
            weight = conv.weight.to(device=device, dtype=dtype).contiguous(memory_format=self._memory_format)
            self.register_buffer(f"conv{i}_weight", weight)
            self.register_buffer(f"conv{i}_bias", conv.bias.to(device=device, dtype=dtype).contiguous())
            onednn = bool(want_fused) and conv.activation in _ONEDNN and (
                fused_conv is True or fused_conv_available(dtype, device, conv.activation))
            fused.append(onednn)
            layers.append((_onednn_conv if onednn else conv_then_activation, weight, getattr(self, f"conv{i}_bias"),
                           conv.stride, conv.padding, conv.activation))
        self.fused_conv = bool(fused) and all(fused)
        self._layers = tuple(layers)  # plain tuple: no nn.Module attribute lookups per call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(dtype=self.dtype, memory_format=self._memory_format)
        for run, *layer in self._layers:
            x = run(x, *layer)
        return x

    def extra_repr(self) -> str:
        how = "oneDNN conv+activation" if self.fused_conv else "conv, activation in place"
        return f"convs={len(self._layers)}, channels_last={self.channels_last}, {how}, dtype={self.dtype}"


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → contiguous (B, H·W, C): a view for a channels-last map, one copy otherwise."""
    b, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(b, h * w, c).contiguous()


class FusedStem(ConvLayers):
    """Images (B, C_in, H, W) → tokens (B, N, C), contiguous, in the model's dtype."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return to_tokens(super().forward(images))
