"""timm's ``Levit`` / ``LevitDistilled``: ``stem``, ``stages[s].downsample`` (``attn_downsample`` + ``mlp``),
``stages[s].blocks[j]`` (``attn`` + ``mlp``), ``head`` [, ``head_dist``]; the linear kind (tokens (B, N, C)) and the
conv kind (``use_conv``: 1×1 ConvNorm + BatchNorm2d over (B, C, H, W)), whose 1×1 convs are Linears. Hardswish only:
timm's experimental SiLU configs are refused."""
from __future__ import annotations

import torch.nn as nn

from levit_kernels.optimize import fold, recognize as r
from levit_kernels.optimize.specs import BlockSpec, HeadSpec, ModelDescription, Tap, fail

NAME = "timm Levit/LevitDistilled"
STRUCTURE = "stem, stages, head, with stages[s].blocks of attn + mlp"
HARDSWISH = ("hardswish",)
HINT = " (timm's experimental SiLU configs such as levit_256d, levit_384_s8, levit_512* are not supported)"


def matches(model: nn.Module) -> bool:
    stages = getattr(model, "stages", None)
    if not (r.has(model, "stem", "stages", "head") and isinstance(stages, nn.Module)):
        return False
    first = next(iter(stages.children()), None)
    blocks = getattr(first, "blocks", None)
    block = next(iter(blocks.children()), None) if isinstance(blocks, nn.Module) else None
    return block is not None and r.has(block, "attn", "mlp")


def _require_hardswish(module, where: str) -> None:
    r.require_activation(module, where, HARDSWISH, HINT)


def _proj(module, where: str) -> nn.Module:
    """timm's ``proj`` = Sequential(act, ln): checks the activation, returns the projection unit."""
    _require_hardswish(getattr(module, "act", None), f"{where}.act")
    return r.child(module, "ln", where, "the projection unit 'ln'")


def _mlp(module, where: str, tap: Tap):
    _require_hardswish(getattr(module, "act", None), f"{where}.act")
    fc1 = r.projection(r.child(module, "ln1", where, "a projection"), f"{where}.ln1")
    fc2 = r.projection(r.child(module, "ln2", where, "a projection"), f"{where}.ln2")
    return r.mlp(where, fc1, fc2, tap)


def _subsample(down, where: str, stride: int) -> None:
    """timm's query subsampling: Downsample(stride, no pool) or AvgPool2d(kernel 1, stride); nothing else."""
    if isinstance(down, nn.AvgPool2d):
        ok = (down.kernel_size in (1, (1, 1)) and down.stride in (stride, (stride, stride))
              and down.padding in (0, (0, 0)))
    else:
        ok = getattr(down, "stride", None) == stride and getattr(down, "pool", "missing") is None
    if not ok:
        fail(where, f"a plain stride-{stride} token subsampling (no pooling)", repr(down))


def _downsample(down, where: str) -> list[BlockSpec]:
    aw = f"{where}.attn_downsample"
    attn = r.child(down, "attn_downsample", where, "a shrink attention 'attn_downsample'")
    stride = getattr(attn, "stride", None)
    q = r.child(attn, "q", aw, "Sequential(down, ln)")
    _subsample(r.child(q, "down", f"{aw}.q", "a subsampling"), f"{aw}.q.down", stride)
    geometry = r.geometry(attn, aw, getattr(attn, "resolution", None), stride)
    kv = r.projection(r.child(attn, "kv", aw, "kv"), f"{aw}.kv")
    query = r.projection(r.child(q, "ln", f"{aw}.q", "ln"), f"{aw}.q")
    proj = r.projection(_proj(r.child(attn, "proj", aw, "Sequential(act, ln)"), f"{aw}.proj"), f"{aw}.proj")
    mlp_module = r.child(down, "mlp", where, "an MLP")
    return [r.shrink(aw, kv, query, proj, geometry, stride, Tap(attn)),
            _mlp(mlp_module, f"{where}.mlp", Tap(mlp_module, residual=True))]


def _block(block, where: str) -> list[BlockSpec]:
    aw = f"{where}.attn"
    attn = r.child(block, "attn", where, "an attention 'attn'")
    geometry = r.geometry(attn, aw, getattr(attn, "resolution", None), 1)
    qkv = r.projection(r.child(attn, "qkv", aw, "qkv"), f"{aw}.qkv")
    proj = r.projection(_proj(r.child(attn, "proj", aw, "Sequential(act, ln)"), f"{aw}.proj"), f"{aw}.proj")
    mlp_module = r.child(block, "mlp", where, "an MLP")
    return [r.attention(aw, qkv, proj, geometry, Tap(attn, residual=True)),
            _mlp(mlp_module, f"{where}.mlp", Tap(mlp_module, residual=True))]


def _blocks(model: nn.Module) -> list[BlockSpec]:
    specs = []
    for s, stage in r.child(model, "stages", "", "a Sequential of stages").named_children():
        where = f"stages.{s}"
        down = r.child(stage, "downsample", where, "a downsample (or Identity)")
        if not isinstance(down, nn.Identity):
            specs += _downsample(down, f"{where}.downsample")
        for j, block in r.child(stage, "blocks", where, "a Sequential of LevitBlocks").named_children():
            specs += _block(block, f"{where}.blocks.{j}")
    return specs


def describe(model: nn.Module) -> ModelDescription:
    if getattr(model, "global_pool", "avg") != "avg":
        fail("global_pool", "'avg' (token mean before the head)", repr(model.global_pool))
    stem = r.stem(r.child(model, "stem", "", "a stem"), "stem", HARDSWISH, HINT)
    conv_kind = bool(getattr(model, "use_conv", False))  # its taps give (B, C, H, W): verify flattens them
    kind = f"timm {type(model).__name__} ({'conv' if conv_kind else 'linear'} kind)"
    blocks = _blocks(model)
    heads = [h for h in (r.classifier(getattr(model, "head", None), "head"),
                         r.classifier(getattr(model, "head_dist", None), "head_dist")) if h is not None]
    return r.finish(kind, stem, Tap(model.stem), blocks, HeadSpec(fold.merged_heads(heads), len(heads)))
