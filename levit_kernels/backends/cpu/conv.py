"""CPU conv2d: the implicit-GEMM convolution of csrc/conv (patch rows of a tile of output pixels gathered into the
thread's workspace and multiplied on the GEMM micro-kernels, bias and activation in their epilogue), as the torch
custom ops ``levit_kernels::conv2d`` (weight packed per call) and ``levit_kernels::conv2d_packed`` (weight packed
once with :func:`pack_conv_weight`, as the optimized stem does). Channels-last: x (B, H, W, C_in) of any strides
(an NCHW tensor's ``permute(0, 2, 3, 1)`` view is read in place), output (B, Ho, Wo, C_out) contiguous.
"""
from __future__ import annotations

import torch

from levit_kernels.backends.cpu import _loader
from levit_kernels.backends.cpu.gemm import _require_float32


def conv2d(x, weight, bias, stride, padding, activation):
    _require_float32("conv2d", x)
    return torch.ops.levit_kernels.conv2d.default(x, weight, bias, list(stride), list(padding), activation)


def pack_conv_weight(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` (C_out, C_in, kh, kw) float32 in the kernels' layout for the active ISA: (ceil(C_out / nr),
    kh·kw·C_in, nr), the patch ordered (ky, kx, ci)."""
    _require_float32("pack_conv_weight", weight)
    return torch.ops.levit_kernels.conv_pack.default(weight)


def _pair(v) -> list:
    return list(v) if isinstance(v, (tuple, list, torch.Size)) else [v, v]


def conv2d_packed(x, packed_weight, out_channels: int, kernel_size, bias=None, stride=1, padding=0,
                  activation=None):
    """:func:`conv2d` with ``weight`` given as ``pack_conv_weight(weight)`` (``out_channels``, ``kernel_size``:
    its shape[0] and shape[2:]); ``kernel_size``, ``stride``, ``padding`` an int or a pair."""
    _require_float32("conv2d_packed", x)
    return torch.ops.levit_kernels.conv2d_packed.default(x, packed_weight, out_channels, _pair(kernel_size), bias,
                                                         _pair(stride), _pair(padding), activation)


def _out_side(size, kernel, stride, pad):
    return (size + 2 * pad - kernel) // stride + 1


def _register_fake_impls():
    """Shape-only implementations, so torch.compile / torch.export trace through the ops without running them."""

    @torch.library.register_fake("levit_kernels::conv2d")
    def _conv2d_fake(x, weight, bias, stride, padding, activation):
        kh, kw = weight.shape[2:]
        return x.new_empty((x.shape[0], _out_side(x.shape[1], kh, stride[0], padding[0]),
                            _out_side(x.shape[2], kw, stride[1], padding[1]), weight.shape[0]))

    @torch.library.register_fake("levit_kernels::conv_pack")
    def _conv_pack_fake(weight):
        nr = torch.ops.levit_kernels.gemm_panel_width()
        k = weight.shape[1] * weight.shape[2] * weight.shape[3]
        return weight.new_empty(((weight.shape[0] + nr - 1) // nr, k, nr))

    @torch.library.register_fake("levit_kernels::conv2d_packed")
    def _conv2d_packed_fake(x, packed_weight, out_channels, kernel_size, bias, stride, padding, activation):
        return x.new_empty((x.shape[0], _out_side(x.shape[1], kernel_size[0], stride[0], padding[0]),
                            _out_side(x.shape[2], kernel_size[1], stride[1], padding[1]), out_channels))


if _loader.availability()[0]:
    _register_fake_impls()
