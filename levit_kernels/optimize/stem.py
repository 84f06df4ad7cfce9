"""The stem of the optimized model (and the convolutions between stages): convolutions with BatchNorm folded and the
unit's activation fused or applied in place, on PyTorch/oneDNN or, per layer and call, on our own CPU kernel.

Measured on this project's Zen 3 machine (1 thread, process CPU time; LeViT-128/256/384 stems, batch 16 / 1):
channels-last runs the convolutions 1.25-1.6× / 1.1-1.9× faster than NCHW, and the last convolution's NHWC output
already is the (B, N, C) token tensor, so flattening to tokens costs no copy. On CPU, oneDNN's fused
convolution + Hardswish (``torch.ops.mkldnn._convolution_pointwise``, what inductor emits) adds 0-14% over
conv + in-place Hardswish; it is used when this torch build has it and it agrees with F.conv2d on a probe, for
each activation oneDNN fuses (Hardswish, ReLU; none); GELU runs in place after the convolution.

On CPU in fp32 a layer can run on this project's own convolution instead (``levit_kernels::conv2d_packed``,
csrc/conv: an implicit GEMM on the GEMM micro-kernels, bias and activation in their epilogue, NHWC in and out,
weight packed once here); :func:`kernel_wins` says for which layers and calls, from the measurements quoted there.
Whole stems, that choice against every layer on oneDNN (benchmarks/bench_cpu_conv.py, 1 thread): Zen 3 (AVX2,
before the direct first-layer kernel) batch 1 LeViT-128S 1.12×, LeViT-256 1.06×, LeViT-384 1.02×; batch 16
0.99-1.02× (oneDNN ran there). Zen 4 (AVX-512; ``--stem-only --rounds 7``): LeViT-128S batch 16 1.05× (24.6 vs
25.8 ms; the gather + GEMM first layer had 1.00×), batch 1 1.29× (1.59 vs 2.05 ms; before 1.10-1.14×); LeViT-256
batch 16 1.04×, batch 1 1.10×. On GPUs, and in other dtypes, the stem stays on PyTorch (cuDNN).
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


# Where our convolution runs instead of oneDNN's (both fused with the activation), from benchmarks/bench_cpu_conv.py
# (1 thread, process CPU time, medians of 5-7 interleaved rounds; ours / oneDNN speed).
# AMD EPYC Zen 3, AVX2, before the direct kernel:
# - batch 1, layers after the first: LeViT-128S 16→32 @112² 1.03×, 32→64 @56² 1.10×, 64→128 @28² 1.17×;
#   LeViT-384 48→96 @112² 0.98×, 96→192 @56² 1.02×, 192→384 @28² 1.02×; EfficientFormer-L1 24→48 @112² 1.00-1.05×,
#   48→96 @56² 1.05×, 96→224 @28² 1.09×, 224→448 @14² 1.23× (oneDNN pays a per-call cost that small maps expose);
# - batch 16 (both near the FMA peak, ~36 GFLOP/s of the 38.7 measured): 0.90-1.02×, e.g. 224→448 @14² 0.92×,
#   192→384 @28² 0.95×: oneDNN stays;
# - the first layer (C_in = 3, K = 27) on the gather + GEMM: 0.91× (3→16) / 0.72× (3→24) at batch 1, 0.58-0.90× at
#   batch 16 (the 27-float patch gather cost about what its GEMM did).
# AMD EPYC Zen 4, AVX-512 (double-pumped 512-bit FMAs, 113 GFLOP/s), LeViT-128S / LeViT-256:
# - layers after the first: batch 1 1.12-1.42× / 0.95-1.12×, batch 16 0.93-1.02× / 0.88-0.96× (oneDNN stays);
# - the first layer now runs on the direct kernel (csrc/conv/conv_kernel.h: no gather, taps read through the map's
#   strides; any patch of at most 64 floats): 3→16 batch 16 1.00× (the gather + GEMM: 0.48×), batch 1 1.56× (0.45×);
#   3→32 0.91× (0.80×) / 1.05× (0.71×). AVX2 on the same CPU: 3→16 0.96× / 1.12×. Reading the NCHW images in place
#   costs it 0.78× / 0.91× instead, but saves the channels-last copy of the images every other engine needs (4.5-8.5
#   ms at batch 16, 0.2 ms at batch 1, torch's copy): so the first layer is ours at every size, on the images as
#   given (whole stems: see the module docstring).
# AMD EPYC Zen 5, AVX-512 (full-width FMAs, 224-240 GFLOP/s), after the direct kernel's tap table and constant steps
# (csrc/conv/conv_kernel.h), first layer read as NCHW in place against oneDNN on channels-last input (its image copy
# not counted): 3→16 batch 16 0.95× (0.49× before), batch 1 1.22×; 3→32 batch 16 0.61-0.65× after the wide-tile
# accumulator cap (0.55× before it), batch 1 0.75× (measured before the cap).
# So: ours for the first layer (K < MIN_PATCH_WIDTH) always, later layers when a call's patch matrix (output
# pixels × K floats) is at most MAX_PATCH_FLOATS; decided per call from the input's shape (the batch is known only
# then).
MAX_PATCH_FLOATS = 1 << 20
MIN_PATCH_WIDTH = 28
DIRECT_MAX_PATCH = 64  # csrc/conv/conv_block.cpp kDirectMaxPatch: patches this narrow run on the direct kernel


def kernel_wins(conv: Conv, pixels: int, panel_width: int) -> bool:
    """Whether our convolution is the faster one on ``pixels`` output pixels of this layer (see the figures above);
    ``panel_width``: the active ISA's GEMM panel (levit_kernels::gemm_panel_width; no rule depends on it since the
    direct kernel, which runs whole vectors of a panel, took over the narrow first layer)."""
    c_out, c_in, kh, kw = conv.weight.shape
    k = c_in * kh * kw
    return k < MIN_PATCH_WIDTH or pixels * k <= MAX_PATCH_FLOATS


def _always_ours(conv: Conv, panel_width: int) -> bool:
    """kernel_wins at every size: the first layer."""
    c_out, c_in, kh, kw = conv.weight.shape
    return c_in * kh * kw < MIN_PATCH_WIDTH and kernel_wins(conv, 1 << 62, panel_width)


def _kernel_conv(x, packed, bias, out_channels, kernel_size, stride, padding, activation):
    """(B, C, H, W) → (B, C_out, Ho, Wo) through the NHWC views of both: no copy of a channels-last map."""
    out = torch.ops.levit_kernels.conv2d_packed.default(x.permute(0, 2, 3, 1), packed, out_channels, kernel_size,
                                                        bias, stride, padding, activation)
    return out.permute(0, 3, 1, 2)


def _bound(run, *args) -> Callable:
    return lambda x: run(x, *args)


class _SizeChoice:
    """A layer run by ours or by oneDNN per call, by the call's output pixels (:func:`kernel_wins`)."""

    def __init__(self, conv: Conv, ours: Callable, theirs: Callable, panel_width: int):
        self.conv, self.ours, self.theirs, self.panel_width = conv, ours, theirs, panel_width
        self._geometry = list(zip(conv.weight.shape[2:], conv.stride, conv.padding))

    def __call__(self, x):
        pixels = x.shape[0]
        for size, (k, s, p) in zip(x.shape[2:], self._geometry):
            pixels *= (size + 2 * p - k) // s + 1
        return (self.ours if kernel_wins(self.conv, pixels, self.panel_width) else self.theirs)(x)


class ConvLayers(nn.Module):
    """Convolutions (each then its activation) over a (B, C, H, W) map in the model's dtype, weights prepared once.

    Per layer: our kernel (``kernel_conv``: None = per call where :func:`kernel_wins`, on CPU fp32 channels-last;
    True / False = always / never), else oneDNN's fused conv + activation (``fused_conv``: None = where it is
    available and agrees on a probe), else F.conv2d + the activation in place."""

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
            ours = None
            if can_kernel:
                from levit_kernels.backends.cpu import pack_conv_weight

                packed = pack_conv_weight(conv.weight.to(device=device, dtype=dtype))
                self.register_buffer(f"conv{i}_packed", packed)
                ours = _bound(_kernel_conv, packed, bias, conv.weight.shape[0], list(conv.weight.shape[2:]),
                              list(conv.stride), list(conv.padding), conv.activation)
                if kernel_conv is True:
                    layers.append(ours)
                    self.engines.append("levit_kernels")
                    continue
            weight = conv.weight.to(device=device, dtype=dtype).contiguous(memory_format=self._memory_format)
            self.register_buffer(f"conv{i}_weight", weight)
            onednn = bool(want_fused) and conv.activation in _ONEDNN and (
                fused_conv is True or fused_conv_available(dtype, device, conv.activation))
            theirs = _bound(_onednn_conv if onednn else conv_then_activation, weight, bias, conv.stride,
                            conv.padding, conv.activation)
            engine = "oneDNN conv+activation" if onednn else "conv, activation in place"
            nr = torch.ops.levit_kernels.gemm_panel_width() if ours is not None else 0
            if ours is not None and _always_ours(conv, nr):
                layers.append(ours)
                self.engines.append("levit_kernels")
            elif ours is not None and kernel_wins(conv, 1, nr):  # ours on calls small enough, per call
                layers.append(_SizeChoice(conv, ours, theirs, nr))
                self.engines.append(f"levit_kernels where kernel_wins, else {engine}")
            else:
                layers.append(theirs)
                self.engines.append(engine)
        self.fused_conv = bool(layers) and all(e == "oneDNN conv+activation" for e in self.engines)
        # Our first layer on its direct kernel reads the images in any layout (see forward).
        self._any_layout_in = channels_last and bool(convs) and self.engines[0] == "levit_kernels" and \
            convs[0].weight[0].numel() <= DIRECT_MAX_PATCH
        self._layers = tuple(layers)  # plain tuple: no nn.Module attribute lookups per call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Channels-last first, except for our first layer on the direct kernel: its broadcasts of the taps cost
        # about the same in any layout (NCHW images 0.78-0.91× the channels-last speed, Zen 4), far less than the
        # copy (LeViT-128S batch 16: 4.5-8.5 ms, the layer itself ~4.3 ms). Its output is channels-last. (The gather
        # + GEMM on NCHW images measured 1.64× slower than on a channels-last copy, more than the copy costs.)
        if self._any_layout_in:
            x = x.to(dtype=self.dtype)
        else:
            x = x.to(dtype=self.dtype, memory_format=self._memory_format)
        for layer in self._layers:
            x = layer(x)
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
