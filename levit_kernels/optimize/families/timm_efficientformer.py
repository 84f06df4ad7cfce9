"""timm's ``EfficientFormer`` (``efficientformer_l1/l3/l7``), recognised by structure (timm is never imported):
``stem`` (conv1, norm1, act1, conv2, norm2, act2), ``stages[i]`` (``downsample``: conv + norm, or Identity;
``blocks``: MetaBlock2d — token_mixer (Pooling), ls1, mlp (ConvMlpWithNorm), ls2 —, a Flat, then MetaBlock1d —
norm1, token_mixer (Attention), ls1, norm2, mlp (Mlp), ls2), ``norm``, ``head``, ``head_dist``.

The grid sides are the paper's (each downsampling halves the side: 56, 28, 14, 7 for 224×224 images, the size timm
marks fixed); the last stage's side is the attention's resolution when it has one.
"""
from __future__ import annotations

import math

import torch.nn as nn

from levit_kernels.optimize import fold, recognize as r
from levit_kernels.optimize.families import _metaformer as mf
from levit_kernels.optimize.specs import BlockSpec, ConvSpec, ModelDescription, Tap, fail

NAME = "timm EfficientFormer"
STRUCTURE = "stem, stages, norm, head, head_dist, with stages[i].blocks of token_mixer + mlp"
LAST_SIDE = 7  # the paper's last-stage grid (224 / 32) when no attention block fixes it


def matches(model: nn.Module) -> bool:
    stages = getattr(model, "stages", None)
    if not (r.has(model, "stem", "stages", "norm", "head", "head_dist") and isinstance(stages, nn.Module)):
        return False
    first = next(iter(stages.children()), None)
    blocks = getattr(first, "blocks", None)
    block = next(iter(blocks.children()), None) if isinstance(blocks, nn.Module) else None
    return block is not None and r.has(block, "token_mixer", "mlp", "ls1", "ls2")


def _pool_size(mixer, where: str) -> int:
    pool = r.child(mixer, "pool", where, "an AvgPool2d 'pool'")
    k = pool.kernel_size if isinstance(pool, nn.AvgPool2d) else None
    k = k[0] if isinstance(k, tuple) and len(set(k)) == 1 else k
    if not isinstance(k, int) or pool.stride not in (1, (1, 1)) or pool.padding not in (k // 2, (k // 2, k // 2)) \
            or pool.count_include_pad or pool.ceil_mode or pool.divisor_override is not None:
        fail(f"{where}.pool", "AvgPool2d(k, stride=1, padding=k // 2, count_include_pad=False)", repr(pool))
    return k


def _meta4d(block, where: str, side: int, width: int) -> list[BlockSpec]:
    mlp = r.child(block, "mlp", where, "a ConvMlpWithNorm")
    mw = f"{where}.mlp"
    activation = r.require_activation(getattr(mlp, "act", None), f"{mw}.act", mf.ACTIVATIONS)
    fc1 = r.plain_projection(r.child(mlp, "fc1", mw, "a 1×1 conv"), f"{mw}.fc1", bn=_norm(mlp, "norm1", mw))
    fc2 = r.plain_projection(r.child(mlp, "fc2", mw, "a 1×1 conv"), f"{mw}.fc2", bn=_norm(mlp, "norm2", mw))
    ls1 = fold.layer_scale(r.child(block, "ls1", where, "a LayerScale2d"), f"{where}.ls1", width)
    ls2 = fold.layer_scale(r.child(block, "ls2", where, "a LayerScale2d"), f"{where}.ls2", width)
    mixer = r.child(block, "token_mixer", where, "a Pooling token mixer")
    return mf.meta4d(where, ls1, _pool_size(mixer, f"{where}.token_mixer"), side, fc1, fc2, ls2, activation,
                     Tap(block.ls1, base=mixer), Tap(block))


def _norm(mlp, name: str, where: str):
    """The MLP's BatchNorm ``name``; None for an Identity (timm's norm_layer=None)."""
    norm = r.child(mlp, name, where, "a BatchNorm2d (or Identity)")
    return None if isinstance(norm, nn.Identity) else norm


def _meta3d(block, where: str, side: int, width: int) -> list[BlockSpec]:
    attn = r.child(block, "token_mixer", where, "an Attention")
    aw = f"{where}.token_mixer"
    biases = getattr(attn, "attention_biases", None)
    resolution = math.isqrt(biases.shape[1]) if getattr(biases, "dim", lambda: 0)() == 2 else None
    geometry = r.geometry(attn, aw, resolution, 1)
    mlp = r.child(block, "mlp", where, "an Mlp")
    mw = f"{where}.mlp"
    if not isinstance(getattr(mlp, "norm", nn.Identity()), nn.Identity):
        fail(f"{mw}.norm", "no norm inside the MLP (Identity)", mlp.norm)
    activation = r.require_activation(getattr(mlp, "act", None), f"{mw}.act", mf.ACTIVATIONS)
    fc1 = r.plain_projection(r.child(mlp, "fc1", mw, "a Linear"), f"{mw}.fc1")
    fc2 = r.plain_projection(r.child(mlp, "fc2", mw, "a Linear"), f"{mw}.fc2")
    ls1 = fold.layer_scale(r.child(block, "ls1", where, "a LayerScale"), f"{where}.ls1", width)
    ls2 = fold.layer_scale(r.child(block, "ls2", where, "a LayerScale"), f"{where}.ls2", width)
    norm1 = r.child(block, "norm1", where, "a LayerNorm")
    specs = mf.meta3d(where, attn, geometry, norm1, ls1, r.child(block, "norm2", where, "a LayerNorm"), fc1, fc2,
                      ls2, activation, Tap(block.ls1, base=norm1), Tap(block))
    if specs[0].resolution != side:
        fail(aw, f"an attention over the {side}×{side} grid", f"resolution {specs[0].resolution}")
    return specs


def _stages(model: nn.Module, stem_width: int) -> list[BlockSpec]:
    stages = list(r.child(model, "stages", "", "a Sequential of stages").named_children())
    downs = [r.child(stage, "downsample", f"stages.{i}", "a Downsample (or Identity)") for i, stage in stages]
    strides = [1 if isinstance(d, nn.Identity) else getattr(getattr(d, "conv", None), "stride", (1,))[0]
               for d in downs]
    # The last stage's grid: the attention's when it has one; the earlier ones from the strides.
    last = next((m.token_mixer.attention_biases.shape[1] for m in stages[-1][1].blocks.children()
                 if hasattr(m, "norm1") and hasattr(getattr(m, "token_mixer", None), "attention_biases")), None)
    side = math.isqrt(last) if last is not None else LAST_SIDE
    for s in reversed(strides[1:]):
        side *= s
    specs, width = [], stem_width
    for (i, stage), down in zip(stages, downs):
        where = f"stages.{i}"
        if not isinstance(down, nn.Identity):
            conv = r.conv2d(r.child(down, "conv", f"{where}.downsample", "a Conv2d"), f"{where}.downsample.conv",
                            bn=r.child(down, "norm", f"{where}.downsample", "a BatchNorm2d"))
            specs.append(ConvSpec(f"{where}.downsample", conv, side, Tap(down)))
            side, width = conv.out_side(side), conv.weight.shape[0]
        for j, block in r.child(stage, "blocks", where, "a Sequential of blocks").named_children():
            bw = f"{where}.blocks.{j}"
            if r.has(block, "norm1", "token_mixer", "mlp"):
                specs += _meta3d(block, bw, side, width)
            elif r.has(block, "token_mixer", "mlp"):
                specs += _meta4d(block, bw, side, width)
            elif any(True for _ in block.parameters()) or any(True for _ in block.children()):
                fail(bw, "MetaBlock2d (token_mixer, mlp), Flat, or MetaBlock1d (norm1, token_mixer, mlp)", block)
            # else: the Flat between the maps and the tokens: the fused model's tokens already are (B, N, C)
    return specs


def describe(model: nn.Module) -> ModelDescription:
    if getattr(model, "global_pool", "avg") != "avg":
        fail("global_pool", "'avg' (token mean before the head)", repr(model.global_pool))
    stem = r.stem(r.child(model, "stem", "", "a stem"), "stem", mf.ACTIVATIONS)
    blocks = _stages(model, stem[-1].weight.shape[0])
    heads = [h for h in (r.classifier(getattr(model, "head", None), "head"),
                         r.classifier(getattr(model, "head_dist", None), "head_dist")) if h is not None]
    first_side = blocks[0].side if blocks and blocks[0].kind in ("pool", "conv") else None
    return r.finish(f"timm {type(model).__name__}", stem, Tap(model.stem), blocks,
                    mf.head(r.child(model, "norm", "", "a LayerNorm"), heads), first_side)
