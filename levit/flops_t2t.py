"""Analytical multiply-add count of a T2T-ViT forward, per image (``levit.count_macs`` dispatches here).

Convention (that of :mod:`levit.flops`): a Linear counts ``in · out · tokens``; LayerNorm, biases, GELU, residual
adds, the soft splits (pure data movement), the cls token and the position table are free. A softmax attention
counts ``H·Nq·Nk·(D + 1 + Dv)`` (q·kᵀ, softmax, attention·v). The performer's linear attention counts what it
multiplies: the random features of q and k ``2·N·m·D`` (their ``|x|²/2`` terms another ``2·N·D``), ``φ(k)ᵀv``
``N·m·Dv``, the normaliser ``φ(q)·Σφ(k)`` ``N·m``, and ``φ(q)·(φ(k)ᵀv)`` ``N·m·Dv``.

At 224 this gives (G): T2T-ViT-7/10/12/14/19/24 1.148 / 1.518 / 1.765 / 4.787 / 8.485 / 13.669 and
T2T-ViT_t-14/19/24 6.102 / 9.801 / 14.985, against the paper's 1.1 / 1.5 / 1.8 / 4.8 / 8.5 / 13.8 and
6.1 / 9.8 / 15.0: within 2% except T2T-ViT-7 (+4.4%), and no count can fix that: T2T-ViT-7 and -12 differ only
by 5 blocks, and 1.1 G and 1.8 G both within 2% would need those 5 blocks to count ≥ 0.642 G, i.e. ≥ 128 M a block,
while a block is 123.2 M (103.4 M of it Linears; counting less of its attention could only make it smaller).
"""
from __future__ import annotations

from typing import Union

from levit.flops import attention_core_macs
from levit.t2t_vit import (PERFORMER_KERNEL_RATIO, TOKEN_DIM, TOKEN_MLP_RATIO, T2TViTSpec, check_img_size, get_spec,
                           token_grid_sides, token_layer_widths)

PAPER_MACS = {"t2t_vit_7": 1.1e9, "t2t_vit_10": 1.5e9, "t2t_vit_12": 1.8e9, "t2t_vit_14": 4.8e9,
              "t2t_vit_19": 8.5e9, "t2t_vit_24": 13.8e9, "t2t_vit_t_14": 6.1e9, "t2t_vit_t_19": 9.8e9,
              "t2t_vit_t_24": 15.0e9}


def performer_core_macs(tokens: int, dim: int, value_dim: int, features: int) -> int:
    """The performer's feature maps of q and k and its two linear-attention products (see the module docstring)."""
    feature_maps = 2 * tokens * (features * dim + dim)
    return feature_maps + tokens * features * (2 * value_dim + 1)


def token_layer_macs(kind: str, tokens: int, dim: int, out_dim: int = TOKEN_DIM) -> int:
    """One token layer on ``tokens`` tokens of width ``dim``: qkv/kqv (dim → 3·out), proj, MLP, and its attention."""
    hidden = int(out_dim * TOKEN_MLP_RATIO)  # both kinds: MLP 64 → 64 → 64
    linears = tokens * (dim * 3 * out_dim + out_dim * out_dim + 2 * out_dim * hidden)
    if kind == "transformer":
        return linears + attention_core_macs(1, tokens, tokens, out_dim, out_dim)
    return linears + performer_core_macs(tokens, out_dim, out_dim, int(out_dim * PERFORMER_KERNEL_RATIO))


def block_macs(spec: T2TViTSpec, tokens: int) -> int:
    """One backbone block: qkv (E → 3E), proj, MLP (E → hidden → E), attention over all tokens."""
    e = spec.embed_dim
    linears = tokens * (e * 3 * e + e * e + 2 * e * spec.mlp_hidden)
    return linears + attention_core_macs(spec.heads, tokens, tokens, spec.head_dim, spec.head_dim)


def count_macs(name: Union[str, T2TViTSpec], img_size: int = 224, num_classes: int = 1000) -> int:
    """Multiply-adds of one image's forward pass of variant ``name`` (see the module docstring)."""
    spec = get_spec(name)
    sides = token_grid_sides(check_img_size(img_size))
    width1, width2 = token_layer_widths()
    tokens = sides[2] ** 2
    return (token_layer_macs(spec.tokens, sides[0] ** 2, width1)
            + token_layer_macs(spec.tokens, sides[1] ** 2, width2)
            + tokens * width2 * spec.embed_dim                      # project
            + spec.depth * block_macs(spec, tokens + 1)             # + the cls token
            + spec.embed_dim * num_classes)
