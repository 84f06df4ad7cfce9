"""vit-pytorch's plain ViT (``vit_pytorch.vit.ViT``), recognised by structure (vit_pytorch is never imported):
``to_patch_embedding`` = Sequential(Rearrange('b c (h p1) (w p2) -> b (h w) (p1 p2 c)'), LayerNorm, Linear,
LayerNorm), ``cls_token`` (n_cls ≤ 1, dim), ``pos_embedding`` (N + n_cls, dim), ``transformer``, ``pool``,
``mlp_head``.

The patchify rearrange is a non-overlapping soft split in (p1, p2, c) order; the first LayerNorm's affine is folded
into the Linear, the second keeps its affine (the class token and the positions are added after it). A model built
with ``num_classes=0`` returns every token, not logits: it is refused.
"""
from __future__ import annotations

import torch.nn as nn

from levit_kernels.optimize import fold, recognize as r
from levit_kernels.optimize.families import _vit
from levit_kernels.optimize.specs import LinearSpec, ModelDescription, Tap, UnfoldSpec, fail

NAME = "vit-pytorch ViT"
STRUCTURE = "to_patch_embedding (patchify Rearrange, LayerNorm, Linear, LayerNorm), cls_token, pos_embedding, " \
            "transformer, pool, mlp_head"
PATCHIFY = "b c (h p1) (w p2) -> b (h w) (p1 p2 c)"


def matches(model: nn.Module) -> bool:
    embed = getattr(model, "to_patch_embedding", None)
    return (r.has(model, "to_patch_embedding", "cls_token", "pos_embedding", "transformer", "mlp_head")
            and isinstance(embed, nn.Sequential) and not any(isinstance(m, nn.Unfold) for m in embed))


def describe(model: nn.Module) -> ModelDescription:
    embed = model.to_patch_embedding
    units = [(f"to_patch_embedding.{n}", m) for n, m in embed.named_children() if not r.is_dropout(m)]
    kinds = [m for _, m in units]
    if len(units) != 4 or getattr(kinds[0], "pattern", None) != PATCHIFY or not isinstance(kinds[1], nn.LayerNorm) \
            or not isinstance(kinds[2], nn.Linear) or not isinstance(kinds[3], nn.LayerNorm):
        fail("to_patch_embedding", f"Sequential(Rearrange('{PATCHIFY}'), LayerNorm, Linear, LayerNorm)", embed)
    lengths = getattr(kinds[0], "axes_lengths", {})
    patch = lengths.get("p1")
    if not isinstance(patch, int) or patch < 1 or lengths.get("p2") != patch:
        fail(units[0][0], "square patches (p1 = p2)", f"axes {lengths}")
    if model.mlp_head is None:
        fail("mlp_head", "a Linear classifier (a model built with num_classes=0 returns every token)", None)
    cls, pos = model.cls_token, model.pos_embedding
    n_cls = cls.shape[-2] if hasattr(cls, "shape") and cls.dim() == 2 else 1
    grid = _vit.side_from_positions(pos.shape[0] if hasattr(pos, "shape") else 0, n_cls, "pos_embedding")
    side = grid * patch
    fc, eps = fold.layernorm_before(kinds[1], r.plain_projection(kinds[2], units[2][0]), units[1][0])
    if fc.weight.shape[1] % (patch * patch):
        fail(units[2][0], f"an input width of channels × {patch}²", f"{fc.weight.shape[1]}")
    width = fc.weight.shape[0]
    specs = [UnfoldSpec(units[0][0], patch, patch, 0, side, "cl", Tap(kinds[0])),
             LinearSpec(units[2][0], fc, Tap(kinds[2]), eps),
             _vit.layer_norm(kinds[3], units[3][0], Tap(kinds[3])),
             _vit.class_tokens(cls, pos, "tokens", grid * grid, width, Tap(model.transformer, of_input=True))]
    blocks, head = _vit.vitpytorch_backbone(model)
    return _vit.describe_chain(f"vit-pytorch {type(model).__name__}", fc.weight.shape[1] // (patch * patch), side,
                               Tap(kinds[0], of_input=True), specs + blocks, head)
