"""This project's EfficientFormer (``levit.EfficientFormer``, fused or not): ``stem`` (conv1, act1, conv2, act2:
ConvBN units or, fused, Conv2d), ``stages[i]`` (``downsample`` ConvBN / Conv2d / Identity; ``blocks``: Meta4D — ls1,
mlp (ConvMLP of ConvBN, or fused a PointwiseMLP of Linears), ls2 (Identity once fused) —, Flatten, Meta3D — norm1,
token_mixer, ls1, norm2, mlp (LinearMLP), ls2), ``norm``, ``head``, ``head_dist`` (None without distillation).

Its activations are not modules (the model applies its GELU through the reference, ``ACTIVATION``), so the family's
GELU is stated here; its grid sides are the model's own (``sides``).
"""
from __future__ import annotations

import torch.nn as nn

from levit_kernels.optimize import fold, recognize as r
from levit_kernels.optimize.families import _metaformer as mf
from levit_kernels.optimize.specs import BlockSpec, ConvSpec, ModelDescription, Tap, fail, grid_text

NAME = "levit.EfficientFormer"
STRUCTURE = "stem, stages, norm, head, head_dist, sides"
ACTIVATION = "gelu"  # levit.efficientformer.ACTIVATION: the exact erf GELU


def matches(model: nn.Module) -> bool:
    return r.has(model, "stem", "stages", "norm", "head", "head_dist", "sides", "spec")


def _meta4d(block, where: str, side: int, width: int) -> list[BlockSpec]:
    mlp = r.child(block, "mlp", where, "a ConvMLP or PointwiseMLP")
    mw = f"{where}.mlp"
    fc1 = r.projection(r.child(mlp, "fc1", mw, "a 1×1 ConvBN or Linear"), f"{mw}.fc1")
    fc2 = r.projection(r.child(mlp, "fc2", mw, "a 1×1 ConvBN or Linear"), f"{mw}.fc2")
    ls1 = fold.layer_scale(r.child(block, "ls1", where, "a LayerScale"), f"{where}.ls1", width)
    ls2 = mf.layer_scale_or_none(r.child(block, "ls2", where, "a LayerScale (Identity once fused)"), f"{where}.ls2",
                                 width)
    # The pool mixer's output is what the block's MLP gets.
    return mf.meta4d(where, ls1, getattr(block, "pool_size", None), side, fc1, fc2, ls2, ACTIVATION,
                     Tap(mlp, of_input=True), Tap(block))


def _meta3d(block, where: str, side: int, width: int) -> list[BlockSpec]:
    attn = r.child(block, "token_mixer", where, "an Attention")
    aw = f"{where}.token_mixer"
    geometry = r.geometry(attn, aw, getattr(attn, "resolution", None), 1)
    if geometry[3] != side:
        fail(aw, f"an attention over the {grid_text(side)} grid", f"resolution {grid_text(geometry[3])}")
    mlp = r.child(block, "mlp", where, "a LinearMLP")
    mw = f"{where}.mlp"
    fc1 = r.projection(r.child(mlp, "fc1", mw, "a Linear"), f"{mw}.fc1")
    fc2 = r.projection(r.child(mlp, "fc2", mw, "a Linear"), f"{mw}.fc2")
    ls1 = mf.layer_scale_or_none(r.child(block, "ls1", where, "a LayerScale"), f"{where}.ls1", width)
    ls2 = mf.layer_scale_or_none(r.child(block, "ls2", where, "a LayerScale"), f"{where}.ls2", width)
    # Its LayerNorms are applied through the reference (not called as modules): the residual is the block's input.
    return mf.meta3d(where, attn, geometry, r.child(block, "norm1", where, "a LayerNorm"), ls1,
                     r.child(block, "norm2", where, "a LayerNorm"), fc1, fc2, ls2, ACTIVATION,
                     Tap(block.ls1, base=block), Tap(block))


def _downsample(down, where: str, side: int) -> ConvSpec:
    if isinstance(down, nn.Conv2d):
        conv = r.conv2d(down, where)
    else:
        conv = r.conv2d(r.child(down, "conv", where, "a ConvBN (.conv, .bn) or Conv2d"), f"{where}.conv",
                        bn=r.child(down, "bn", where, "a BatchNorm2d"))
    return ConvSpec(where, conv, side, Tap(down))


def _stages(model: nn.Module, width: int) -> list[BlockSpec]:
    sides = getattr(model, "sides", None)
    stages = list(r.child(model, "stages", "", "a Sequential of stages").named_children())
    if not isinstance(sides, tuple) or len(sides) != len(stages):
        fail("sides", f"the grid side of each of the {len(stages)} stages", repr(sides))
    specs, side = [], sides[0]
    for (i, stage), stage_side in zip(stages, sides):
        where = f"stages.{i}"
        down = r.child(stage, "downsample", where, "a ConvBN (or Identity)")
        if not isinstance(down, nn.Identity):
            spec = _downsample(down, f"{where}.downsample", side)
            specs.append(spec)
            side, width = spec.conv.out_side(side), spec.conv.weight.shape[0]
        if side != stage_side:
            fail(where, f"a {grid_text(stage_side)} grid (the model's sides)", grid_text(side))
        for j, block in r.child(stage, "blocks", where, "a Sequential of blocks").named_children():
            bw = f"{where}.blocks.{j}"
            if r.has(block, "norm1", "token_mixer", "mlp"):
                specs += _meta3d(block, bw, side, width)
            elif r.has(block, "ls1", "mlp", "ls2"):
                specs += _meta4d(block, bw, side, width)
            elif any(True for _ in block.parameters()) or any(True for _ in block.children()):
                fail(bw, "Meta4D (ls1, mlp, ls2), Flatten, or Meta3D (norm1, token_mixer, mlp)", block)
            # else: the Flatten between the maps and the tokens: the fused model's tokens already are (B, N, C)
    return specs


def describe(model: nn.Module) -> ModelDescription:
    stem = r.stem(r.child(model, "stem", "", "a stem"), "stem", mf.ACTIVATIONS)
    blocks = _stages(model, stem[-1].weight.shape[0])
    heads = [h for h in (r.classifier(getattr(model, "head", None), "head"),
                         r.classifier(getattr(model, "head_dist", None), "head_dist")) if h is not None]
    kind = "levit EfficientFormer (BN fused)" if getattr(model, "fused", False) else "levit EfficientFormer"
    return r.finish(kind, stem, Tap(model.stem), blocks, mf.head(r.child(model, "norm", "", "a LayerNorm"), heads),
                    model.sides[0])
