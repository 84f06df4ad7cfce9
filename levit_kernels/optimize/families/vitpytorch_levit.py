"""vit-pytorch's LeViT (``vit_pytorch.levit.LeViT``), recognised by structure (vit_pytorch is never imported):
``conv_embedding`` (four stride-2 3×3 convs, no norm, no activation), ``backbone`` (``Transformer`` stages whose
``layers`` are [Attention, FeedForward] pairs; a one-layer downsampling Transformer between stages), ``pool``
(global average) and ``mlp_head``.

Its maps are channel-major (B, C, H, W) throughout and what differs from LeViT's layout is folded here:

- q, k, v are separate 1×1 conv + BatchNorm units with head-major channels; they become one projection laid out per
  head as [q_h | k_h | v_h] (or [k_h | v_h] beside the query projection for the downsampling attention, whose stride-2
  1×1 query conv reads the even-index tokens — the shrink attention's subsampling);
- its bias is an ``nn.Embedding(R², heads)`` read through ``pos_indices`` (the |dy|·R + |dx| index, checked) and added
  to the already scaled logits as ``bias / scale``: the table is ``pos_bias.weightᵀ / scale``;
- GELU comes before the output projection (``to_out`` = GELU, 1×1 conv, BatchNorm): the attention's activation;
- the feed-forward is 1×1 conv, Hardswish, 1×1 conv with the residual added by the Transformer.

A model built with ``num_distill_classes`` returns a (logits, distill) tuple; it is refused (build it without).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from levit_kernels.optimize import fold, recognize as r
from levit_kernels.optimize.specs import BlockSpec, HeadSpec, ModelDescription, Projection, Tap, fail

NAME = "vit-pytorch LeViT"
STRUCTURE = "conv_embedding, backbone, pool, mlp_head"
ANY_ACTIVATION = ("hardswish", "gelu", "relu")


def matches(model: nn.Module) -> bool:
    return r.has(model, "conv_embedding", "backbone", "pool", "mlp_head")


def _units(seq, where: str, expected: str) -> list[tuple[str, nn.Module]]:
    """The children of ``seq`` that are not eval-time identities (dropout)."""
    if not isinstance(seq, nn.Sequential):
        fail(where, expected, seq)
    return [(f"{where}.{name}", m) for name, m in seq.named_children() if not r.is_dropout(m)]


def _conv_bn(seq, where: str, stride: int = 1) -> Projection:
    """Sequential(1×1 conv with this stride, no padding; BatchNorm) as a folded projection."""
    units = _units(seq, where, "Sequential(Conv2d 1×1, BatchNorm2d)")
    conv = units[0][1] if units else None
    if (len(units) != 2 or not isinstance(conv, nn.Conv2d) or conv.kernel_size != (1, 1)
            or conv.stride != (stride, stride) or conv.padding != (0, 0) or conv.groups != 1
            or not isinstance(units[1][1], nn.BatchNorm2d)):
        fail(where, f"Sequential(Conv2d 1×1 stride {stride}, BatchNorm2d)", seq)
    weight = conv.weight.detach().to(torch.float64)[:, :, 0, 0]
    return Projection(*fold.batchnorm_after(weight, fold.as64(conv.bias), units[1][1], f"{where}.1"), where)


def _per_head(parts: list[Projection], heads: int, where: str) -> Projection:
    """Head-major projections (rows h·d .. (h+1)·d of each) interleaved per head: [part0_h | part1_h | ...]."""
    weights = [p.weight.reshape(heads, -1, p.weight.shape[1]) for p in parts]
    biases = [p.bias.reshape(heads, -1) for p in parts]
    return Projection(torch.cat(weights, 1).reshape(-1, parts[0].weight.shape[1]), torch.cat(biases, 1).reshape(-1),
                      where)


def _attention(attn, where: str, residual: bool) -> BlockSpec:
    heads, scale = attn.heads, getattr(attn, "scale", None)
    r.positive_int(heads, "heads", where)
    conv_q = _units(r.child(attn, "to_q", where, "to_q"), f"{where}.to_q", "Sequential(Conv2d, BatchNorm2d)")
    stride = conv_q[0][1].stride[0] if conv_q and isinstance(conv_q[0][1], nn.Conv2d) else None
    r.positive_int(stride, "stride", f"{where}.to_q")
    q = _conv_bn(attn.to_q, f"{where}.to_q", stride)
    k = _conv_bn(r.child(attn, "to_k", where, "to_k"), f"{where}.to_k")
    v = _conv_bn(r.child(attn, "to_v", where, "to_v"), f"{where}.to_v")
    if any(p.weight.shape[0] % heads for p in (q, k, v)) or q.weight.shape[0] != k.weight.shape[0]:
        fail(where, f"q, k, v widths that are multiples of heads={heads}, q as wide as k",
             f"q {q.weight.shape[0]}, k {k.weight.shape[0]}, v {v.weight.shape[0]}")
    key_dim, value_dim = k.weight.shape[0] // heads, v.weight.shape[0] // heads
    if not isinstance(scale, float) or not math.isclose(scale, key_dim ** -0.5):
        fail(f"{where}.scale", f"key_dim ** -0.5 = {key_dim ** -0.5:.6g}", repr(scale))
    table = r.child(attn, "pos_bias", where, "an nn.Embedding(R², heads) bias table")
    if not isinstance(table, nn.Embedding) or table.embedding_dim != heads or \
            math.isqrt(table.num_embeddings) ** 2 != table.num_embeddings:
        fail(f"{where}.pos_bias", f"an nn.Embedding(R², {heads})", table)
    resolution = math.isqrt(table.num_embeddings)
    index = getattr(attn, "pos_indices", None)
    if not isinstance(index, torch.Tensor):
        fail(f"{where}.pos_indices", "the (Nq, Nk) index buffer of the bias table", index)
    r.check_bias_index(index, f"{where}.pos_indices", resolution, stride)
    # Its logits are scale·q·kᵀ + bias/scale: the kernels add the table as it is, so it is divided here.
    biases = table.weight.detach().to(torch.float64).T / scale
    out = _units(r.child(attn, "to_out", where, "to_out"), f"{where}.to_out",
                 "Sequential(GELU, Conv2d 1×1, BatchNorm2d)")
    if len(out) != 3:
        fail(f"{where}.to_out", "Sequential(activation, Conv2d 1×1, BatchNorm2d) and dropout", attn.to_out)
    activation = r.require_activation(out[0][1], out[0][0], ANY_ACTIVATION)
    proj = r.plain_projection(out[1][1], out[1][0], bn=out[2][1])
    geometry = (heads, key_dim, value_dim, resolution, float(scale), biases)
    if stride == 1:
        if not residual:
            fail(where, "a residual attention (a Transformer with attn_residual=True) or a downsampling one",
                 "attn_residual=False at stride 1")
        return r.attention(where, _per_head([q, k, v], heads, f"{where}.to_q/k/v"), proj, geometry,
                           Tap(attn, residual=True), activation)
    if residual:
        fail(where, "no residual around a downsampling attention", "attn_residual=True")
    return r.shrink(where, _per_head([k, v], heads, f"{where}.to_k/v"), q, proj, geometry, stride, Tap(attn),
                    activation)


def _feed_forward(ff, where: str) -> BlockSpec:
    units = _units(r.child(ff, "net", where, "net"), f"{where}.net", "Sequential(Conv2d 1×1, act, Conv2d 1×1)")
    if len(units) != 3:
        fail(f"{where}.net", "Sequential(Conv2d 1×1, activation, Conv2d 1×1) and dropout", ff.net)
    activation = r.require_activation(units[1][1], units[1][0], ANY_ACTIVATION)
    fc1, fc2 = r.plain_projection(units[0][1], units[0][0]), r.plain_projection(units[2][1], units[2][0])
    return r.mlp(where, fc1, fc2, Tap(ff, residual=True), activation)


def _blocks(model: nn.Module) -> list[BlockSpec]:
    specs = []
    for i, stage in r.child(model, "backbone", "", "a Sequential of Transformers").named_children():
        where = f"backbone.{i}"
        residual = getattr(stage, "attn_residual", None)
        if not isinstance(residual, bool):
            fail(where, "a Transformer with a bool 'attn_residual'", stage)
        for j, pair in r.child(stage, "layers", where, "a ModuleList of [Attention, FeedForward]").named_children():
            lw = f"{where}.layers.{j}"
            if not isinstance(pair, nn.ModuleList) or len(pair) != 2:
                fail(lw, "a ModuleList [Attention, FeedForward]", pair)
            specs += [_attention(pair[0], f"{lw}.0", residual), _feed_forward(pair[1], f"{lw}.1")]
    return specs


def describe(model: nn.Module) -> ModelDescription:
    if isinstance(getattr(model, "distill_head", None), nn.Module):
        fail("distill_head", "no distillation head (a model built with num_distill_classes returns a "
             "(logits, distill) tuple; build it without to optimize it)", model.distill_head)
    pool = _units(r.child(model, "pool", "", "a global average pool"), "pool", "Sequential(AdaptiveAvgPool2d(1), ...)")
    if not pool or not isinstance(pool[0][1], nn.AdaptiveAvgPool2d) or pool[0][1].output_size not in (1, (1, 1)):
        fail("pool", "Sequential(AdaptiveAvgPool2d(1), Rearrange)", model.pool)
    stem = r.stem(r.child(model, "conv_embedding", "", "a conv stem"), "conv_embedding", ANY_ACTIVATION)
    head = r.classifier(r.child(model, "mlp_head", "", "a Linear head"), "mlp_head")
    return r.finish(f"vit-pytorch {type(model).__name__}", stem, Tap(model.conv_embedding), _blocks(model),
                    HeadSpec(head, 1 if head is not None else 0))
