"""The stem of the optimized model: PyTorch convolutions with BatchNorm folded and Hardswish fused or in place.

Measured on this project's Zen 3 machine (1 thread, process CPU time; LeViT-128/256/384 stems, batch 16 / 1):
channels-last runs the convolutions 1.25-1.6× / 1.1-1.9× faster than NCHW, and the last convolution's NHWC output
already is the (B, N, C) token tensor, so flattening to tokens costs no copy. On CPU, oneDNN's fused
convolution + Hardswish (``torch.ops.mkldnn._convolution_pointwise``, what inductor emits) adds 0-14% over
conv + in-place Hardswish; it is used when this torch build has it and it agrees with F.conv2d on a probe.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from levit_kernels.optimize.recognize import StemConv


def _conv_hardswish(x, weight, bias, stride, padding, hardswish):
    x = F.conv2d(x, weight, bias, stride, padding)
    return F.hardswish(x, inplace=True) if hardswish else x


def _onednn_conv(x, weight, bias, stride, padding, hardswish):
    return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, list(padding), list(stride), [1, 1], 1,
                                                   "hardswish" if hardswish else "none", [], "")


def fused_conv_available(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether oneDNN's conv + Hardswish runs here and matches F.conv2d + Hardswish (checked on a probe)."""
    if device.type != "cpu" or dtype != torch.float32 or not torch.backends.mkldnn.is_available():
        return False
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 9, 9, generator=gen).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(8, 3, 3, 3, generator=gen).contiguous(memory_format=torch.channels_last)
    bias = torch.randn(8, generator=gen)
    try:
        with torch.no_grad():
            fused = _onednn_conv(x, weight, bias, (2, 2), (1, 1), True)
    except (AttributeError, RuntimeError):  # a torch build without the op, or one that rejects it
        return False
    return torch.allclose(fused, _conv_hardswish(x, weight, bias, (2, 2), (1, 1), True), atol=1e-5)


class FusedStem(nn.Module):
    """Images (B, C_in, H, W) → tokens (B, N, C), contiguous, in the model's dtype."""

    def __init__(self, convs: list[StemConv], dtype: torch.dtype, device: torch.device, channels_last: bool = True,
                 fused_conv: Optional[bool] = None):
        super().__init__()
        self.channels_last = channels_last
        self.dtype = dtype
        self._memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if fused_conv is None:
            fused_conv = channels_last and fused_conv_available(dtype, device)
        self.fused_conv = fused_conv
        run: Callable = _onednn_conv if fused_conv else _conv_hardswish
        layers = []
        for i, conv in enumerate(convs, start=1):
            weight = conv.weight.to(device=device, dtype=dtype).contiguous(memory_format=self._memory_format)
            self.register_buffer(f"conv{i}_weight", weight)
            self.register_buffer(f"conv{i}_bias", conv.bias.to(device=device, dtype=dtype).contiguous())
            layers.append((weight, getattr(self, f"conv{i}_bias"), conv.stride, conv.padding, conv.hardswish))
        self._run = run
        self._layers = tuple(layers)  # plain tuple: no nn.Module attribute lookups per call

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(dtype=self.dtype, memory_format=self._memory_format)
        for layer in self._layers:
            x = self._run(x, *layer)
        b, c, h, w = x.shape
        return x.permute(0, 2, 3, 1).reshape(b, h * w, c).contiguous()  # a view for NHWC; one copy for NCHW

    def extra_repr(self) -> str:
        how = "oneDNN conv+Hardswish" if self.fused_conv else "conv, Hardswish in place"
        return f"convs={len(self._layers)}, channels_last={self.channels_last}, {how}, dtype={self.dtype}"
