"""biased_attention and shrink_attention when their keys and values do not fit on chip: the flash kernel
(flash.py), which streams keys in blocks, with the table bias gathered into a dense (H, Nq, Nk) tensor.

biased.py and shrink.py hold every key and value of a (batch, head) pair on chip for the whole program (no online
softmax). That stops fitting once BLOCK_N·(D_PAD + DV_PAD) elements outgrow the registers and shared memory:
scripts/triton_compile_check.py measured LeViT-192's stage-1 shrink attention in fp32 (256 × (32 + 128) floats =
160 KiB) at 176–180 KiB of shared memory, over sm_80's 163 KiB, and spilling in every config; the largest K/V tile
seen to fit every config is 96 KiB (LeViT-192's stage-0 attention in fp32). Larger grids (any input size) reach
it in 16-bit too. The gathered bias is H·Nq·Nk elements (LeViT-192 stage 1: 6 × 49 × 196 floats, 230 KB) — small
next to the activations — and the softmax, scale and activation are the flash kernel's own.
"""
from levit_kernels import reference
from levit_kernels.backends.triton import flash, gemm

# The largest K/V tile (bytes) the kept-on-chip kernels take; above it the launch goes through the flash kernel.
ON_CHIP_KV_BYTES = 96 * 1024


def fits_on_chip(block_n: int, d_pad: int, dv_pad: int, itemsize: int) -> bool:
    return block_n * (d_pad + dv_pad) * itemsize <= ON_CHIP_KV_BYTES


def biased_attention(q, k, v, attention_biases, resolution, stride, scale, activation):
    bias = reference.gather_attention_bias(attention_biases, resolution, stride).to(q.dtype)
    return flash.attention(q, k, v, scale, bias.unsqueeze(0), activation)


def shrink_attention(x, q_weight, q_bias, k, v, attention_biases, resolution, stride, scale, activation):
    b, heads, _, key_dim = k.shape
    q = gemm.linear(reference.subsample_tokens(x, resolution, stride), q_weight, q_bias, None, None)
    q = q.view(b, -1, heads, key_dim).transpose(1, 2)
    return biased_attention(q, k, v, attention_biases, resolution, stride, scale, activation)


__all__ = ["ON_CHIP_KV_BYTES", "fits_on_chip", "biased_attention", "shrink_attention"]
