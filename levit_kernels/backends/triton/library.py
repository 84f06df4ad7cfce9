"""The Triton kernels as torch custom ops ``torch.ops.levit_triton.*``, each with a fake (meta) implementation, so
torch.compile traces them as single opaque nodes (no graph break) and CUDA graphs capture their launches.

The kernel modules import lazily, at the first call: importing this module needs neither triton nor a GPU.
Inference only: no autograd formula is registered.
"""
from typing import Optional, Sequence

import torch
from torch import Tensor


@torch.library.custom_op("levit_triton::biased_attention", mutates_args=())
def biased_attention(q: Tensor, k: Tensor, v: Tensor, attention_biases: Tensor, resolution: Sequence[int], stride: int,
                     scale: float, activation: Optional[str]) -> Tensor:
    from levit_kernels.backends.triton import biased

    return biased.biased_attention(q, k, v, attention_biases, resolution, stride, scale, activation)


@biased_attention.register_fake
def _(q, k, v, attention_biases, resolution, stride, scale, activation):
    b, h, nq, _ = q.shape
    return q.new_empty((b, nq, h * v.shape[3]))


@torch.library.custom_op("levit_triton::shrink_attention", mutates_args=())
def shrink_attention(x: Tensor, q_weight: Tensor, q_bias: Tensor, k: Tensor, v: Tensor, attention_biases: Tensor,
                     resolution: Sequence[int], stride: int, scale: float, activation: Optional[str]) -> Tensor:
    from levit_kernels.backends.triton import shrink

    return shrink.shrink_attention(x, q_weight, q_bias, k, v, attention_biases, resolution, stride, scale,
                                   activation)


@shrink_attention.register_fake
def _(x, q_weight, q_bias, k, v, attention_biases, resolution, stride, scale, activation):
    (rh, rw), s = resolution, stride
    return x.new_empty((x.shape[0], ((rh - 1) // s + 1) * ((rw - 1) // s + 1), k.shape[1] * v.shape[3]))


@torch.library.custom_op("levit_triton::attention", mutates_args=())
def attention(q: Tensor, k: Tensor, v: Tensor, scale: float, bias: Optional[Tensor],
              activation: Optional[str]) -> Tensor:
    from levit_kernels.backends.triton import flash

    return flash.attention(q, k, v, scale, bias, activation)


@attention.register_fake
def _(q, k, v, scale, bias, activation):
    b, h, nq, _ = q.shape
    return q.new_empty((b, nq, h * v.shape[3]))


@torch.library.custom_op("levit_triton::mlp", mutates_args=())
def mlp(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, activation: Optional[str],
        residual: bool) -> Tensor:
    from levit_kernels.backends.triton import gemm

    return gemm.mlp(x, w1, b1, w2, b2, activation, residual)


@mlp.register_fake
def _(x, w1, b1, w2, b2, activation, residual):
    return x.new_empty((*x.shape[:-1], w2.shape[0]))


@torch.library.custom_op("levit_triton::linear", mutates_args=())
def linear(x: Tensor, weight: Tensor, bias: Optional[Tensor], activation: Optional[str],
           residual: Optional[Tensor]) -> Tensor:
    from levit_kernels.backends.triton import gemm

    return gemm.linear(x, weight, bias, activation, residual)


@linear.register_fake
def _(x, weight, bias, activation, residual):
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


@torch.library.custom_op("levit_triton::layer_norm", mutates_args=())
def layer_norm(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], eps: float) -> Tensor:
    from levit_kernels.backends.triton import norm_pool

    return norm_pool.layer_norm(x, weight, bias, eps)


@layer_norm.register_fake
def _(x, weight, bias, eps):
    return x.new_empty(x.shape)


@torch.library.custom_op("levit_triton::pool_mixer", mutates_args=())
def pool_mixer(x: Tensor, layer_scale: Tensor, pool_size: int) -> Tensor:
    from levit_kernels.backends.triton import norm_pool

    return norm_pool.pool_mixer(x, layer_scale, pool_size)


@pool_mixer.register_fake
def _(x, layer_scale, pool_size):
    return x.new_empty(x.shape)
