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

EfficientFormer (:func:`efficientformer_macs`), in the same convention: the stem's and downsamplings' 3×3 convs,
every 1×1-conv/Linear MLP, each Meta3D's qkv and proj and its attention core, both heads; the pool mixer (adds and
one multiply per element) and LayerNorm are free like BN. L1 / L3 / L7 give 1.291G / 3.907G / 10.119G against the
paper's 1.3G / 3.9G / 10.2G (−0.7%, +0.2%, −0.8%).
"""
from __future__ import annotations

from typing import Union

from levit import efficientformer
from levit.registry import family_of
from levit.config import (AttentionShape, BlockShape, ConvShape, LeViTSpec, MLPShape, ShrinkAttentionShape,
                          downsampled_side, head_shape, image_grid, op_shapes, stem_shapes)
from levit_kernels.reference import grid_points

PAPER_MACS = {"levit_128s": 305e6, "levit_128": 406e6, "levit_192": 658e6, "levit_256": 1120e6,
              "levit_384": 2353e6}
PAPER_MACS_EFFICIENTFORMER = {"efficientformer_l1": 1.3e9, "efficientformer_l3": 3.9e9, "efficientformer_l7": 10.2e9}


def conv_macs(shape: ConvShape) -> int:
    return shape.in_channels * shape.out_channels * shape.kernel ** 2 * shape.out_points


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


def efficientformer_macs(name: Union[str, "efficientformer.EfficientFormerSpec"], img_size: int = 224,
                        num_classes: int = 1000, distillation: bool = True) -> int:
    """Multiply-adds of one image's forward pass of EfficientFormer variant ``name`` (see the module docstring)."""
    spec = efficientformer.get_spec(name)
    sides = efficientformer.stage_sides(img_size)
    c0 = spec.widths[0]
    macs = 3 * (c0 // 2) * 9 * grid_points(downsampled_side(image_grid(img_size))) + (c0 // 2) * c0 * 9 * grid_points(sides[0])
    last = len(spec.widths) - 1
    for i, (width, depth, side) in enumerate(zip(spec.widths, spec.depths, sides)):
        if i > 0:
            macs += spec.widths[i - 1] * width * 9 * grid_points(side)
        mlp = 2 * spec.mlp_ratio * width * width * grid_points(side)
        attention_blocks = spec.attention_blocks if i == last else 0
        macs += depth * mlp
        if attention_blocks:
            qkv = width * spec.heads * (2 * spec.key_dim + spec.value_dim)
            proj = spec.heads * spec.value_dim * width
            core = attention_core_macs(spec.heads, grid_points(side), grid_points(side), spec.key_dim, spec.value_dim)
            macs += attention_blocks * ((qkv + proj) * grid_points(side) + core)
    return macs + spec.widths[-1] * num_classes * (2 if distillation else 1)


def count_macs(name: Union[str, LeViTSpec], img_size: int = 224, num_classes: int = 1000,
               distillation: bool = True) -> int:
    """Multiply-adds of one image's forward pass of variant ``name`` of any family (see the module docstring);
    T2T-ViT names are counted by :func:`levit.flops_t2t.count_macs` (``distillation`` does not apply to them)."""
    from levit import t2t_vit

    if isinstance(name, t2t_vit.T2TViTSpec) or (isinstance(name, str) and name in t2t_vit.SPECS):
        from levit.flops_t2t import count_macs as count_t2t_macs

        return count_t2t_macs(name, img_size, num_classes)
    if isinstance(name, efficientformer.EfficientFormerSpec) or (
            isinstance(name, str) and family_of(name) == "efficientformer"):  # unknown names raise, listing all
        return efficientformer_macs(name, img_size, num_classes, distillation)
    head = head_shape(name, num_classes, distillation)
    return (sum(conv_macs(s) for s in stem_shapes(name, img_size))
            + sum(block_macs(s) for s in op_shapes(name, img_size))
            + head.channels * head.num_classes * head.heads)
