"""vit-pytorch's T2TViT (``vit_pytorch.t2t.T2TViT``), recognised by structure (vit_pytorch is never imported):
``to_patch_embedding`` (a Sequential: per T2T layer [RearrangeImage], nn.Unfold, Rearrange('b c n -> b n c'), a
one-head ``Transformer`` of the unfolded width (147, 1323 with the default layers) or Identity for the last; then a
Linear), ``cls_token`` (1, 1, dim), ``pos_embedding`` (1, N + 1, dim), ``transformer`` (vit-pytorch's Transformer),
``pool`` ("cls" or "mean") and ``mlp_head``.

Each token Transformer becomes softmax attentions and MLPs (``_vit``) plus its final LayerNorm with affine (a soft
split's zero padding follows it, so the affine cannot be folded); the last soft split and the Linear become one
convolution. Its image side is one whose soft splits give the position table's grid: the multiple of the total stride.
"""
from __future__ import annotations

import math

import torch.nn as nn

from levit_kernels.optimize import recognize as r
from levit_kernels.optimize.families import _vit
from levit_kernels.optimize.specs import BlockSpec, ModelDescription, Tap, fail

NAME = "vit-pytorch T2TViT"
STRUCTURE = "to_patch_embedding with nn.Unfold soft splits, cls_token, pos_embedding, transformer, pool, mlp_head"
LAYOUT = "[RearrangeImage], Unfold, Rearrange('b c n -> b n c'), Transformer or Identity, ..., Linear"
MAX_SIDE = 8192


def matches(model: nn.Module) -> bool:
    embed = getattr(model, "to_patch_embedding", None)
    return (r.has(model, "to_patch_embedding", "cls_token", "pos_embedding", "transformer", "mlp_head")
            and isinstance(embed, nn.Sequential) and any(isinstance(m, nn.Unfold) for m in embed))


def _is_to_tokens(m) -> bool:
    return getattr(m, "pattern", None) == "b c n -> b n c"


def _layers(embed) -> list[tuple[str, nn.Module]]:
    """The children that compute something: no Identity/Dropout, no RearrangeImage (the tokens' map view)."""
    return [(f"to_patch_embedding.{n}", m) for n, m in embed.named_children()
            if not r.is_dropout(m) and type(m).__name__ != "RearrangeImage"]


def _splits(layers) -> list[tuple]:
    """[(where, Unfold, Rearrange, Transformer or None)], and the final Linear, checking the layout."""
    groups, i = [], 0
    while i < len(layers) and isinstance(layers[i][1], nn.Unfold):
        where, split = layers[i]
        if i + 1 >= len(layers) or not _is_to_tokens(layers[i + 1][1]):
            fail(where, f"an Unfold followed by Rearrange('b c n -> b n c') ({LAYOUT})",
                 layers[i + 1][1] if i + 1 < len(layers) else None)
        transformer = layers[i + 2][1] if i + 2 < len(layers) and hasattr(layers[i + 2][1], "layers") else None
        groups.append((where, split, layers[i + 1][1], transformer))
        i += 3 if transformer is not None else 2
    if not groups or i != len(layers) - 1 or not isinstance(layers[i][1], nn.Linear) or groups[-1][3] is not None:
        at = layers[i][0] if i < len(layers) else "to_patch_embedding"
        fail(at, f"the T2T layout {LAYOUT}", layers[i][1] if i < len(layers) else None)
    return groups


def _image_side(groups, grid: int) -> int:
    """The largest image side whose soft splits end on a grid×grid map."""
    geometry = [_vit.unfold_geometry(split, where) for where, split, _, _ in groups]

    def final(side):
        for kernel, stride, padding in geometry:
            side = (side + 2 * padding - kernel) // stride + 1
        return side

    sides = [s for s in range(1, MAX_SIDE + 1) if final(s) == grid]
    if not sides:
        fail("pos_embedding", "a grid the soft splits can produce", f"a {grid}×{grid} grid")
    # Several sides give the grid (223..226 → 14² with the default layers): the multiple of the total stride (224,
    # what the model was built for with a usual image_size) when there is one, else the largest.
    total_stride = math.prod(stride for _, stride, _ in geometry)
    return next((s for s in sides if s % total_stride == 0), sides[-1])


def describe(model: nn.Module) -> ModelDescription:
    embed = model.to_patch_embedding
    layers = _layers(embed)
    groups = _splits(layers)
    pos, cls = model.pos_embedding, model.cls_token
    n_cls = cls.shape[-2] if hasattr(cls, "shape") and cls.dim() >= 2 else 1
    grid = _vit.side_from_positions(pos.shape[-2] if hasattr(pos, "shape") else 0, n_cls, "pos_embedding")
    side = _image_side(groups, grid)
    linear_where, linear = layers[-1]
    specs: list[BlockSpec] = []
    size, channels = side, None
    for n, (where, split, to_tokens, transformer) in enumerate(groups):
        if n == len(groups) - 1:
            specs.append(_vit.unfold_projection(split, linear, f"{where}+{linear_where.rsplit('.', 1)[1]}", size,
                                                channels, Tap(linear)))
            break
        spec = _vit.unfold(split, where, size, Tap(to_tokens))
        blocks, norm = _vit.vitpytorch_transformer(transformer, f"{where}.transformer")
        specs += [spec, *blocks, _vit.layer_norm(norm, f"{where}.transformer.norm", Tap(norm))]
        size, channels = spec.out_side(), norm.normalized_shape[0]
    if channels is None:
        fail("to_patch_embedding", "at least one token Transformer before the last soft split", embed)
    width, tokens = specs[-1].conv.weight.shape[0], grid * grid
    specs.append(_vit.class_tokens(cls, pos, "tokens", tokens, width, Tap(model.transformer, of_input=True)))
    blocks, head = _vit.vitpytorch_backbone(model)
    in_width = specs[1].qkv.weight.shape[1]
    patch = specs[0].kernel ** 2
    if in_width % patch:
        fail(specs[1].where, f"an input width of channels × {patch}", f"{in_width}")
    return _vit.describe_chain(f"vit-pytorch {type(model).__name__}", in_width // patch, side,
                               Tap(embed, of_input=True), specs + blocks, head)
