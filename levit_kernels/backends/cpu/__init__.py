"""C++ CPU backend (``backend="cpu"``): the kernels in csrc/, registered as torch custom ops ``levit_kernels::*``.

ISA variants (AVX-512, AVX2, NEON, scalar) are chosen at run time by the extension; see :func:`cpu_isa`.
Besides the ops, weights can be packed once (:func:`pack_weight`) for :func:`linear_packed` /
:func:`mlp_packed`, and convolution weights (:func:`pack_conv_weight`) for :func:`conv2d_packed`, as
levit_kernels.optimize does.
"""
from levit_kernels.backends.cpu._loader import availability, cpu_isa, force_isa, isa_supported, supported_isas
from levit_kernels.backends.cpu.attention import attention, biased_attention, shrink_attention
from levit_kernels.backends.cpu.conv import conv2d, conv2d_packed, pack_conv_weight
from levit_kernels.backends.cpu.gemm import linear, linear_packed, mlp, mlp_packed, pack_weight
from levit_kernels.backends.cpu.norm_pool import layer_norm, pool_mixer

__all__ = ["availability", "cpu_isa", "force_isa", "isa_supported", "supported_isas", "attention", "biased_attention",
           "shrink_attention", "linear", "mlp", "pack_weight", "linear_packed", "mlp_packed", "layer_norm",
           "pool_mixer", "conv2d", "conv2d_packed", "pack_conv_weight"]
