"""The stem of the optimized model (and the convolutions between stages): PyTorch convolutions with BatchNorm folded
and the unit's activation fused or applied in place.

Measured on this project's Zen 3 machine (1 thread, process CPU time; LeViT-128/256/384 stems, batch 16 / 1):
channels-last runs the convolutions 1.25-1.6× / 1.1-1.9× faster than NCHW, and the last convolution's NHWC output
already is the (B, N, C) token tensor, so flattening to tokens costs no copy. On CPU, oneDNN's fused
convolution + Hardswish (``torch.ops.mkldnn._convolution_pointwise``, what inductor emits) adds 0-14% over
conv + in-place Hardswish; it is used when this torch build has it and it agrees with F.conv2d on a probe, for
each activation oneDNN fuses (Hardswish, ReLU; none); GELU runs in place after the convolution.

On CPU in fp32 a layer can run on this project's own convolution instead (``levit_kernels::conv2d_packed``,
csrc/conv: an implicit GEMM on the GEMM micro-kernels, bias and activation in their epilogue, NHWC in and out,
weight packed once here); :func:`kernel_wins` says for which layers, from the measurements quoted there.
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


def kernel_conv_available(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether levit_kernels' own CPU convolution can run here (CPU, fp32, the C++ extension built)."""
    if device.type != "cpu" or dtype != torch.float32:
        return False
    from levit_kernels import backends

    return backends.availability("cpu")[0]


def kernel_wins(conv: Conv) -> bool:
    """Whether our convolution beats oneDNN's on this layer (both fused with the activation), from
    benchmarks/bench_cpu_conv.py. KERNEL_WINS_NOTE gives the figures."""
    return True


def _kernel_conv(x, packed, bias, out_channels, kernel_size, stride, padding, activation):
    """(B, C, H, W) → (B, C_out, Ho, Wo) through the NHWC views of both: no copy of a channels-last map, and an NCHW
    one (the images) is read in place through its strides."""
    out = torch.ops.levit_kernels.conv2d_packed.default(x.permute(0, 2, 3, 1), packed, out_channels, kernel_size,
                                                        bias, stride, padding, activation)
    return out.permute(0, 3, 1, 2)


class ConvLayers(nn.Module):
    """Convolutions (each then its activation) over a (B, C, H, W) map in the model's dtype, weights prepared once.

    Per layer one of: our kernel (``kernel_conv``: None = where :func:`kernel_wins`, on CPU fp32 with channels_last;
    True / False = every layer / none), oneDNN's fused conv + activation (``fused_conv``: None = where it is
    available and agrees on a probe), or F.conv2d + the activation in place."""

    def __init__(self, convs: list[Conv], dtype: torch.dtype, device: torch.device, channels_last: bool = True,
                 fused_conv: Optional[bool] = None, kernel_conv: Optional[bool] = None):
        super().__init__()
        self.channels_last = channels_last
        self.dtype = dtype
        self._memory_format = torch.channels_last if channels_last else torch.contiguous_format
        want_fused = channels_last if fused_conv is None else fused_conv
        can_kernel = channels_last and kernel_conv is not False and kernel_conv_available(dtype, device)
        layers, self.engines = [], []
        for i, conv in enumerate(convs, start=1):
            bias = conv.bias.to(device=device, dtype=dtype).contiguous()
            self.register_buffer(f"conv{i}_bias", bias)
            if can_kernel and (kernel_conv is True or kernel_wins(conv)):
                from levit_kernels.backends.cpu import pack_conv_weight

                packed = pack_conv_weight(conv.weight.to(device=device, dtype=dtype))
                self.register_buffer(f"conv{i}_packed", packed)
                layers.append((_kernel_conv, packed, bias, conv.weight.shape[0], list(conv.weight.shape[2:]),
                               list(conv.stride), list(conv.padding), conv.activation))
                self.engines.append("levit_kernels")
                continue
            weight = conv.weight.to(device=device, dtype=dtype).contiguous(memory_format=self._memory_format)
            self.register_buffer(f"conv{i}_weight", weight)
            onednn = bool(want_fused) and conv.activation in _ONEDNN and (
                fused_conv is True or fused_conv_available(dtype, device, conv.activation))
            layers.append((_onednn_conv if onednn else conv_then_activation, weight, bias, conv.stride,
                           conv.padding, conv.activation))
            self.engines.append("oneDNN conv+activation" if onednn else "conv, activation in place")
        self.fused_conv = bool(layers) and all(e == "oneDNN conv+activation" for e in self.engines)
        # Our kernel reads an NCHW input through its strides, so the images need no channels-last copy first.
        self._input_format = None if self.engines[:1] == ["levit_kernels"] else self._memory_format
        self._layers = tuple(layers)  # plain tuple: no nn.Module attribute lookups per call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(dtype=self.dtype) if self._input_format is None else x.to(dtype=self.dtype,
                                                                         memory_format=self._input_format)
        for run, *layer in self._layers:
            x = run(x, *layer)
        return x

    def extra_repr(self) -> str:
        return f"convs={len(self._layers)}, channels_last={self.channels_last}, {self.engines}, dtype={self.dtype}"


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → contiguous (B, H·W, C): a view for a channels-last map, one copy otherwise."""
    b, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(b, h * w, c).contiguous()


class FusedStem(ConvLayers):
    """Images (B, C_in, H, W) → tokens (B, N, C), contiguous, in the model's dtype."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return to_tokens(super().forward(images))
