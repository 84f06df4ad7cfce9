"""ViT-style models as block specs, the parts the T2T-ViT and vit-pytorch adapters share: not a family (it is not in
the table).

- the images enter as channels-last tokens (B, S², C): the stem is one identity 1×1 convolution (exact; it only
  lays the image out channels-last, about 9 MACs a pixel), every soft split and patchify after it an
  :class:`UnfoldSpec`;
- a soft split whose tokens go straight into a Linear is that Linear as a convolution (kernel, stride and padding
  of the split; nn.Unfold's (c, ki, kj) channel order is a conv weight's): :func:`unfold_projection`;
- vit-pytorch's ``Transformer`` (``layers`` = [Attention, FeedForward] pairs, then ``norm``):
  :func:`vitpytorch_transformer`; each Attention's LayerNorm affine is folded into ``to_qkv``, each FeedForward's
  into its first Linear;
- :func:`describe_chain` checks that token counts and widths flow from block to block and builds the description.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn

from levit_kernels.optimize import fold, recognize as r
from levit_kernels.optimize.specs import (BlockSpec, ClassTokenSpec, Conv, ConvSpec, HeadSpec, LayerNormSpec,
                                          ModelDescription, Projection, SoftmaxAttentionSpec, Tap, UnfoldSpec, fail)

F64 = torch.float64
GELU = ("gelu",)


def identity_stem(channels: int) -> list[Conv]:
    weight = torch.eye(channels, dtype=F64)[:, :, None, None]
    return [Conv(weight, torch.zeros(channels, dtype=F64), (1, 1), (0, 0), None, "images")]


def _square(value, name: str, where: str) -> int:
    """An int, or a pair of equal ints (nn.Unfold keeps what it was given)."""
    if isinstance(value, (tuple, list)) and len(value) == 2 and value[0] == value[1]:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        fail(where, f"an nn.Unfold with a square int {name}", f"{name}={value!r}")
    return value


def unfold_geometry(module, where: str) -> tuple[int, int, int]:
    """(kernel, stride, padding) of an undilated square nn.Unfold."""
    if not isinstance(module, nn.Unfold):
        fail(where, "an nn.Unfold (soft split)", module)
    if _square(module.dilation, "dilation", where) != 1:
        fail(where, "an undilated nn.Unfold", f"dilation={module.dilation!r}")
    kernel, stride = _square(module.kernel_size, "kernel_size", where), _square(module.stride, "stride", where)
    if kernel < 1 or stride < 1:
        fail(where, "an nn.Unfold with a positive kernel and stride", f"kernel {kernel}, stride {stride}")
    return kernel, stride, _square(module.padding, "padding", where)


def unfold(module, where: str, side: int, tap: Tap) -> UnfoldSpec:
    kernel, stride, padding = unfold_geometry(module, where)
    spec = UnfoldSpec(where, kernel, stride, padding, side, "cf", tap)
    if spec.out_side() < 1:
        fail(where, f"a soft split that fits a {side}×{side} map", f"kernel {kernel}, padding {padding}")
    return spec


def unfold_projection(module, linear, where: str, side: int, channels: int, tap: Tap) -> ConvSpec:
    """Soft split ``module`` of a side×side map of ``channels``, then ``linear`` on its tokens: one convolution."""
    kernel, stride, padding = unfold_geometry(module, where)
    p = r.plain_projection(linear, f"{where}.linear") if isinstance(linear, nn.Linear) else None
    if p is None:
        fail(f"{where}.linear", "a Linear after the last soft split", linear)
    r.check_in(p, channels * kernel * kernel, f"{channels} channels × the {kernel}×{kernel} patch")
    weight = p.weight.reshape(p.weight.shape[0], channels, kernel, kernel)
    conv = Conv(weight, p.bias, (stride, stride), (padding, padding), None, p.where)
    return ConvSpec(where, conv, side, tap)


def layer_norm(norm, where: str, tap: Tap) -> LayerNormSpec:
    gamma, beta, eps = fold.layernorm_affine(norm, where)
    return LayerNormSpec(where, gamma, beta, eps, tap)


def class_tokens(cls, pos, where: str, tokens: int, width: int, tap: Tap) -> ClassTokenSpec:
    """``cls`` (…, n_cls, C) prepended, ``pos`` (…, ≥ n_cls + tokens, C) added: its first rows are used (as
    vit-pytorch slices its table)."""
    if not isinstance(cls, torch.Tensor) or cls.dim() < 2 or cls.shape[-1] != width or cls.shape[-2] > 1:
        fail(f"{where}.cls_token", f"a (1, 1, {width}) or (n ≤ 1, {width}) class token", _shape(cls))
    n_cls = cls.shape[-2]
    if not isinstance(pos, torch.Tensor) or pos.dim() < 2 or pos.shape[-1] != width or pos.shape[-2] < n_cls + tokens \
            or any(s != 1 for s in pos.shape[:-2]):
        fail(f"{where}.pos_embedding", f"a position table of at least {n_cls + tokens} rows of {width}",
             _shape(pos))
    cls64 = cls.detach().to(F64).reshape(n_cls, width)
    return ClassTokenSpec(where, cls64, pos.detach().to(F64).reshape(-1, width)[:n_cls + tokens], tap)


def _shape(t) -> str:
    return f"shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__


def _units(seq, where: str, expected: str) -> list[tuple[str, nn.Module]]:
    if not isinstance(seq, nn.Sequential):
        fail(where, expected, seq)
    return [(f"{where}.{name}", m) for name, m in seq.named_children() if not r.is_dropout(m)]


def _vitpytorch_attention(attn, where: str) -> SoftmaxAttentionSpec:
    heads = r.positive_int(getattr(attn, "heads", None), "heads", where)
    scale = getattr(attn, "scale", None)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        fail(f"{where}.scale", "a positive float", repr(scale))
    to_qkv = r.child(attn, "to_qkv", where, "a Linear to_qkv")
    if not isinstance(to_qkv, nn.Linear):
        fail(f"{where}.to_qkv", "a Linear", to_qkv)
    qkv, eps = fold.layernorm_before(r.child(attn, "norm", where, "a LayerNorm"),
                                     r.plain_projection(to_qkv, f"{where}.to_qkv"), f"{where}.norm")
    width = qkv.weight.shape[0]
    if width % (3 * heads):
        fail(f"{where}.to_qkv", f"3 × heads ({heads}) × dim_head output features", f"{width}")
    head_dim = width // (3 * heads)
    to_out = r.child(attn, "to_out", where, "Sequential(Linear, Dropout) or Identity")
    if isinstance(to_out, nn.Identity):
        proj = None
        if heads * head_dim != qkv.weight.shape[1]:
            fail(f"{where}.to_out", f"a projection (heads × dim_head = {heads * head_dim} ≠ dim "
                 f"{qkv.weight.shape[1]})", to_out)
    else:
        units = _units(to_out, f"{where}.to_out", "Sequential(Linear, Dropout) or Identity")
        if len(units) != 1 or not isinstance(units[0][1], nn.Linear):
            fail(f"{where}.to_out", "Sequential(Linear, Dropout)", to_out)
        proj = r.plain_projection(units[0][1], units[0][0])
        r.check_in(proj, heads * head_dim, f"heads {heads} × dim_head {head_dim}")
        r.check_out(proj, qkv.weight.shape[1], "the width of the tokens, for the residual add")
    return SoftmaxAttentionSpec(where, qkv, proj, heads, head_dim, head_dim, float(scale), Tap(attn, residual=True),
                                eps, "input")


def _vitpytorch_feed_forward(ff, where: str):
    units = _units(r.child(ff, "net", where, "net"), f"{where}.net",
                   "Sequential(LayerNorm, Linear, GELU, Dropout, Linear, Dropout)")
    kinds = [m for _, m in units]
    if len(units) != 4 or not isinstance(kinds[0], nn.LayerNorm) or not isinstance(kinds[1], nn.Linear) \
            or not isinstance(kinds[3], nn.Linear):
        fail(f"{where}.net", "Sequential(LayerNorm, Linear, GELU, Dropout, Linear, Dropout)", ff.net)
    activation = r.require_activation(kinds[2], units[2][0], GELU)
    fc1, eps = fold.layernorm_before(kinds[0], r.plain_projection(kinds[1], units[1][0]), units[0][0])
    return r.mlp(where, fc1, r.plain_projection(kinds[3], units[3][0]), Tap(ff, residual=True), activation, eps)


def vitpytorch_backbone(model) -> tuple[list[BlockSpec], HeadSpec]:
    """vit-pytorch's ViT-style backbone (``model.transformer``, ``pool``, ``to_latent``, ``mlp_head``) as block specs
    and the head, shared by its ViT and T2TViT."""
    blocks, norm = vitpytorch_transformer(model.transformer, "transformer")
    pool = getattr(model, "pool", None)
    if pool not in ("cls", "mean"):
        fail("pool", "'cls' or 'mean'", repr(pool))
    if not isinstance(getattr(model, "to_latent", nn.Identity()), nn.Identity):
        fail("to_latent", "an Identity", model.to_latent)
    return blocks, head(norm, r.classifier(model.mlp_head, "mlp_head"), pool)


def vitpytorch_transformer(transformer, where: str) -> tuple[list[BlockSpec], nn.Module]:
    """(specs of every [Attention, FeedForward] pair, the final ``norm`` module) of a vit-pytorch Transformer."""
    layers = r.child(transformer, "layers", where, "a ModuleList of [Attention, FeedForward]")
    norm = r.child(transformer, "norm", where, "a final LayerNorm")
    specs: list[BlockSpec] = []
    for j, pair in layers.named_children():
        lw = f"{where}.layers.{j}"
        if not isinstance(pair, nn.ModuleList) or len(pair) != 2:
            fail(lw, "a ModuleList [Attention, FeedForward]", pair)
        specs += [_vitpytorch_attention(pair[0], f"{lw}.0"), _vitpytorch_feed_forward(pair[1], f"{lw}.1")]
    return specs, norm


def head(norm, classifier: Optional[Projection], pool: str) -> HeadSpec:
    """The final LayerNorm → the class token (``pool="cls"``) or the token mean → the classifier, the norm's affine
    folded into it (both poolings commute with a per-channel affine)."""
    if classifier is None:
        fail("head", "a Linear classifier", "none")
    folded, eps = fold.layernorm_before(norm, classifier, "norm")
    return HeadSpec(folded, 1, eps, pool)


def _check_widths(b: BlockSpec, width: int) -> int:
    """The width after block ``b``, which gets tokens of ``width``."""
    if b.kind in ("norm", "tokens"):
        got = b.weight.numel() if b.kind == "norm" and b.weight is not None else (
            b.pos.shape[1] if b.kind == "tokens" else width)
        if got != width:
            fail(b.where, f"{width} channels (the width of the tokens it gets)", f"{got}")
        return width
    first = {"softmax": "qkv", "performer": "kqv", "mlp": "fc1", "linear": "proj"}[b.kind]
    r.check_in(getattr(b, first), width, "the width of the tokens it gets")
    if b.kind == "softmax":
        out = b.heads * b.value_dim if b.proj is None else b.proj.weight.shape[0]
        if b.residual == "input" and out != width:
            fail(b.where, f"{width} output channels, for the residual add", f"{out}")
        return out
    if b.kind == "performer":
        return b.proj.weight.shape[0]
    return (b.fc2 if b.kind == "mlp" else b.proj).weight.shape[0]


def describe_chain(source: str, in_channels: int, side: int, stem_tap: Tap, blocks: list[BlockSpec],
                   head_spec: HeadSpec) -> ModelDescription:
    """The description of a ViT-style chain on side×side images of ``in_channels``: grid sides (while the tokens
    form a map), token counts and widths checked from block to block, then against the head."""
    grid, tokens, width = side, side * side, in_channels
    for b in blocks:
        if b.kind in ("unfold", "conv"):
            if grid is None or b.side != grid:
                fail(b.where, f"a {grid}×{grid} map (the tokens it gets)", f"{b.side}×{b.side}")
            if b.kind == "unfold":
                grid, width = b.out_side(), width * b.kernel ** 2
            else:
                if b.conv.weight.shape[1] != width:
                    fail(b.where, f"a conv over {width} channels (the width of the tokens)",
                         f"{b.conv.weight.shape[1]}")
                grid, width = b.conv.out_side(grid), b.conv.weight.shape[0]
            tokens = grid * grid
        elif b.kind == "tokens":
            if b.pos.shape[0] != b.cls.shape[0] + tokens:
                fail(b.where, f"{tokens} tokens and {b.cls.shape[0]} class tokens", f"{b.pos.shape[0]} positions")
            width, tokens, grid = _check_widths(b, width), tokens + b.cls.shape[0], None
        else:
            width = _check_widths(b, width)
    r.check_in(head_spec.classifier, width, "the width of the last tokens")
    if head_spec.pool == "cls" and not any(b.kind == "tokens" and b.cls.shape[0] for b in blocks):
        fail("pool", "mean pooling (the model has no class token)", "'cls'")
    stem = identity_stem(in_channels)
    return ModelDescription(source, stem, stem_tap, blocks, head_spec, side, ((side, side), (side, side)))


def side_from_positions(positions: int, n_cls: int, where: str) -> int:
    """The grid side of a square token grid whose position table has ``positions`` rows for ``n_cls`` class
    tokens and the grid."""
    grid = math.isqrt(max(positions - n_cls, 0))
    if grid < 1 or grid * grid != positions - n_cls:
        fail(where, f"a position table of n_cls ({n_cls}) + a square number of rows", f"{positions} rows")
    return grid
