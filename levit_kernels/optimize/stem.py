"""The stem of the optimized model: PyTorch convolutions with BatchNorm folded and Hardswish applied in place.

Channels-last (NHWC) is the default: the convolutions run faster in it on CPU (measured 1.5-2× over NCHW for the
LeViT-256 stem, 1 thread, batch 16, on this project's Zen 3 machine; oneDNN's fused conv+Hardswish was no faster
than conv + in-place Hardswish there), and the last convolution's NHWC output already is the (B, N, C) token
tensor, so flattening to tokens costs no copy.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from levit_kernels.optimize.recognize import StemConv


class FusedStem(nn.Module):
    """Images (B, C_in, H, W) → tokens (B, N, C), contiguous, in the model's dtype."""

    def __init__(self, convs: list[StemConv], dtype: torch.dtype, device: torch.device, channels_last: bool = True):
        super().__init__()
        self.channels_last = channels_last
        self.dtype = dtype
        self._memory_format = torch.channels_last if channels_last else torch.contiguous_format
        layers = []
        for i, conv in enumerate(convs, start=1):
            weight = conv.weight.to(device=device, dtype=dtype).contiguous(memory_format=self._memory_format)
            self.register_buffer(f"conv{i}_weight", weight)
            self.register_buffer(f"conv{i}_bias", conv.bias.to(device=device, dtype=dtype).contiguous())
            layers.append((weight, getattr(self, f"conv{i}_bias"), conv.stride, conv.padding, conv.hardswish))
        self._layers = tuple(layers)  # plain tuple: no nn.Module attribute lookups per call

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(dtype=self.dtype, memory_format=self._memory_format)
        for weight, bias, stride, padding, hardswish in self._layers:
            x = F.conv2d(x, weight, bias, stride, padding)
            if hardswish:
                F.hardswish(x, inplace=True)
        b, c, h, w = x.shape
        return x.permute(0, 2, 3, 1).reshape(b, h * w, c).contiguous()  # a view for NHWC; one copy for NCHW

    def extra_repr(self) -> str:
        return f"convs={len(self._layers)}, channels_last={self.channels_last}, dtype={self.dtype}"
