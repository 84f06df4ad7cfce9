"""Analytical multiply-add count of a LeViT forward, per image, in the paper's convention.

Counting convention (that of the LeViT paper's Table 2 and the official code's counter):

- a Conv+BN or Linear+BN counts ``in · out · kernel² · output positions`` multiply-adds; BatchNorm (foldable),
  biases, activations, residual adds and the token mean are free;
- an attention with H heads, Nq queries, Nk keys, key dim D and value dim Dv counts
  ``H·Nq·Nk·D`` (q·kᵀ) + ``H·Nq·Nk`` (softmax) + ``H·Nq·Nk·Dv`` (attention · v);
- each classifier head (BN+Linear) counts ``C · classes``; the distillation head counts too, as in the official
  counter (with one head instead, LeViT-192 would round to 657M).

With that, the five variants give 305.1M / 406.1M / 657.6M / 1128.0M / 2352.9M against the paper's 305M / 406M /
658M / 1120M / 2353M (the paper's LeViT-256 figure is 0.7% below its own counter's).
"""
from __future__ import annotations

from typing import Union

from levit.config import (AttentionShape, BlockShape, ConvShape, LeViTSpec, MLPShape, ShrinkAttentionShape,
                          head_shape, op_shapes, stem_shapes)

PAPER_MACS = {"levit_128s": 305e6, "levit_128": 406e6, "levit_192": 658e6, "levit_256": 1120e6,
              "levit_384": 2353e6}


def conv_macs(shape: ConvShape) -> int:
    return shape.in_channels * shape.out_channels * shape.kernel ** 2 * shape.out_side ** 2


def attention_core_macs(heads: int, queries: int, keys: int, key_dim: int, value_dim: int) -> int:
    """q·kᵀ, softmax (one per logit) and attention·v."""
    return heads * queries * keys * (key_dim + 1 + value_dim)


def block_macs(shape: BlockShape) -> int:
    if isinstance(shape, AttentionShape):
        projections = sum(cin * cout for cin, cout in shape.linears.values()) * shape.tokens
    elif isinstance(shape, ShrinkAttentionShape):
        lin = shape.linears
        projections = (lin["kv"][0] * lin["kv"][1] * shape.keys
                       + (lin["q"][0] * lin["q"][1] + lin["proj"][0] * lin["proj"][1]) * shape.queries)
    elif isinstance(shape, MLPShape):
        return sum(cin * cout for cin, cout in shape.linears.values()) * shape.tokens
    else:
        raise TypeError(f"block_macs: unknown block shape {type(shape).__name__}")
    return projections + attention_core_macs(shape.heads, shape.queries, shape.keys, shape.key_dim, shape.value_dim)


def count_macs(name: Union[str, LeViTSpec], img_size: int = 224, num_classes: int = 1000,
               distillation: bool = True) -> int:
    """Multiply-adds of one image's forward pass of variant ``name`` (see the module docstring); T2T-ViT names are
    counted by :func:`levit.flops_t2t.count_macs` (``distillation`` does not apply to them)."""
    from levit import t2t_vit

    if isinstance(name, t2t_vit.T2TViTSpec) or (isinstance(name, str) and name in t2t_vit.SPECS):
        from levit.flops_t2t import count_macs as count_t2t_macs

        return count_t2t_macs(name, img_size, num_classes)
    head = head_shape(name, num_classes, distillation)
    return (sum(conv_macs(s) for s in stem_shapes(name, img_size))
            + sum(block_macs(s) for s in op_shapes(name, img_size))
            + head.channels * head.num_classes * head.heads)
