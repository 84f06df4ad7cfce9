"""Recognise a LeViT by its structure and describe it as folded, backend-neutral data.

Two module trees are recognised; neither package is imported, only attributes, weight shapes and torch.nn classes
are read:

- ``levit.LeViT`` (this project), unfused or fused: ``stem``, ``blocks`` (``Residual(Attention | MLP)``,
  ``ShrinkAttention``), ``head`` and ``head_dist``;
- timm's ``Levit`` / ``LevitDistilled``: ``stem``, ``stages[s].downsample`` (``attn_downsample`` + ``mlp``),
  ``stages[s].blocks[j]`` (``attn`` + ``mlp``), ``head`` [, ``head_dist``]; the linear kind (tokens (B, N, C)) and
  the conv kind (``use_conv``: 1×1 ConvNorm + BatchNorm2d over (B, C, H, W)), whose 1×1 convs are Linears.

Every BatchNorm is folded in float64 (into the Conv/Linear before it, or the head Linear after it) and the two
eval heads, whose outputs are averaged, become one Linear. Anything else raises :class:`UnrecognizedModelError`
naming the module, what was expected and what was found.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from levit_kernels.reference import attention_bias_index, fold_batchnorm, query_grid_side

F64 = torch.float64


class UnrecognizedModelError(ValueError):
    """The model is not a LeViT this package can optimize; the message names the module and what was expected."""


def _found(module) -> str:
    if module is None:
        return "nothing"
    children = [name for name, _ in module.named_children()] if isinstance(module, nn.Module) else []
    inside = f" (children: {', '.join(children[:8])}{', ...' if len(children) > 8 else ''})" if children else ""
    return f"{type(module).__name__}{inside}"


def _fail(where: str, expected: str, found) -> None:
    found = _found(found) if found is None or isinstance(found, nn.Module) else str(found)
    raise UnrecognizedModelError(f"optimize: unrecognised LeViT structure at '{where or 'model'}': expected "
                                 f"{expected}, found {found}")


def _child(module: nn.Module, name: str, where: str, expected: str) -> nn.Module:
    child = getattr(module, name, None)
    if not isinstance(child, nn.Module):
        _fail(f"{where}.{name}" if where else name, expected, child)
    return child


# ------------------------------------------------------------------------------------------- folded units
@dataclass(frozen=True)
class Projection:
    """A Linear (or 1×1 conv) with its BatchNorm folded: ``x @ weightᵀ + bias``, float64."""

    weight: torch.Tensor  # (out, in)
    bias: torch.Tensor    # (out,)
    where: str

    @property
    def features(self) -> tuple[int, int]:
        return self.weight.shape[1], self.weight.shape[0]


@dataclass(frozen=True)
class StemConv:
    """A stem convolution with its BatchNorm folded, float64; ``hardswish`` when a Hardswish follows it."""

    weight: torch.Tensor  # (out, in, kh, kw)
    bias: torch.Tensor
    stride: tuple[int, int]
    padding: tuple[int, int]
    hardswish: bool
    where: str

    def out_side(self, side: int) -> int:
        return (side + 2 * self.padding[0] - self.weight.shape[2]) // self.stride[0] + 1


@dataclass(frozen=True)
class Tap:
    """Where :func:`levit_kernels.verify` reads a block's output in the source model: the module's output, plus
    its input when the block is a residual whose add happens outside the module."""

    module: nn.Module
    residual: bool = False


@dataclass(frozen=True)
class AttentionSpec:
    """Residual stage attention: qkv projection, biased attention with Hardswish, proj (+ x)."""

    where: str
    qkv: Projection
    proj: Projection
    attention_biases: torch.Tensor  # (H, R²)
    heads: int
    key_dim: int
    value_dim: int
    resolution: int
    scale: float
    tap: Tap
    stride: int = 1
    kind: str = "attention"


@dataclass(frozen=True)
class ShrinkSpec:
    """Shrink attention (no residual): kv projection, queries from the stride-s tokens, Hardswish, proj."""

    where: str
    kv: Projection
    q: Projection
    proj: Projection
    attention_biases: torch.Tensor
    heads: int
    key_dim: int
    value_dim: int
    resolution: int
    stride: int
    scale: float
    tap: Tap
    kind: str = "shrink"


@dataclass(frozen=True)
class MLPSpec:
    """Residual MLP: fc1, Hardswish, fc2 (+ x)."""

    where: str
    fc1: Projection
    fc2: Projection
    tap: Tap
    kind: str = "mlp"


BlockSpec = Union[AttentionSpec, ShrinkSpec, MLPSpec]


@dataclass(frozen=True)
class LeViTDescription:
    """A recognised LeViT: folded float64 weights and every size the fused model needs."""

    source: str                     # e.g. "timm LevitDistilled (conv kind)"
    stem: list[StemConv]
    stem_tap: Tap
    blocks: list[BlockSpec]
    head: Optional[Projection]      # the merged eval head; None when the model has no classifier
    heads_merged: int               # how many heads were averaged into ``head``
    token_side: int                 # side of the token grid the stem produces
    image_sides: tuple[int, int]    # (smallest, largest) square image side the stem maps onto that grid

    @property
    def in_channels(self) -> int:
        return self.stem[0].weight.shape[1]


# ------------------------------------------------------------------------------------------- folding helpers
def _batchnorm64(bn, where: str) -> SimpleNamespace:
    """An eval BatchNorm's statistics and affine in float64 (what fold_batchnorm reads)."""
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
        _fail(where, "a BatchNorm", bn)
    if bn.running_mean is None or bn.running_var is None:
        _fail(where, "a BatchNorm with running statistics (track_running_stats=True)", "one without")
    n, device = bn.num_features, bn.running_mean.device

    def as64(t, default):
        return t.detach().to(F64) if t is not None else torch.full((n,), default, dtype=F64, device=device)

    return SimpleNamespace(weight=as64(bn.weight, 1.0), bias=as64(bn.bias, 0.0),
                           running_mean=bn.running_mean.detach().to(F64),
                           running_var=bn.running_var.detach().to(F64), eps=bn.eps)


def _bias64(layer) -> Optional[torch.Tensor]:
    return None if layer.bias is None else layer.bias.detach().to(F64)


def _pointwise_weight(layer) -> Optional[torch.Tensor]:
    """(out, in) float64 weight of a Linear or a 1×1 stride-1 conv; None for anything else."""
    if isinstance(layer, nn.Linear):
        return layer.weight.detach().to(F64)
    if (isinstance(layer, nn.Conv2d) and layer.kernel_size == (1, 1) and layer.stride == (1, 1)
            and layer.padding in ((0, 0), "valid") and layer.dilation == (1, 1) and layer.groups == 1):
        return layer.weight.detach().to(F64)[:, :, 0, 0]
    return None


def projection(module: nn.Module, where: str) -> Projection:
    """A Linear / 1×1 conv, or a module holding one as ``linear`` followed by a BatchNorm ``bn``; folded."""
    expected = "a Linear or 1×1 conv, or a Linear/Conv+BatchNorm unit (.linear, .bn)"
    weight = _pointwise_weight(module)
    if weight is not None:
        bias = _bias64(module)
        return Projection(weight, bias if bias is not None else weight.new_zeros(weight.shape[0]), where)
    layer, bn = getattr(module, "linear", None), getattr(module, "bn", None)
    weight = _pointwise_weight(layer) if layer is not None else None
    if weight is None or bn is None:
        _fail(where, expected, module)
    if bn.num_features != weight.shape[0]:
        _fail(f"{where}.bn", f"a BatchNorm over {weight.shape[0]} channels", f"{bn.num_features} channels")
    return Projection(*fold_batchnorm(weight, _bias64(layer), _batchnorm64(bn, f"{where}.bn")),
                      where)


def _head(module, where: str) -> Optional[Projection]:
    """A classifier head: a Linear, or BatchNorm ``bn`` → Linear ``linear`` (dropout allowed); None if absent."""
    if module is None or isinstance(module, nn.Identity):
        return None
    if isinstance(module, nn.Linear):
        return projection(module, where)
    bn, layer = getattr(module, "bn", None), getattr(module, "linear", None)
    if not isinstance(layer, nn.Linear) or bn is None:
        _fail(where, "a Linear, or a BatchNorm+Linear head (.bn, .linear)", module)
    from levit.layers import fold_batchnorm_into_next

    weight = layer.weight.detach().to(F64)
    bias = _bias64(layer)
    bias = bias if bias is not None else weight.new_zeros(weight.shape[0])
    return Projection(*fold_batchnorm_into_next(_batchnorm64(bn, f"{where}.bn"), weight, bias), where)


def merged_head(heads: list[Projection]) -> Optional[Projection]:
    """Heads whose outputs the model averages, as one Linear: W = mean(Wᵢ), b = mean(bᵢ)."""
    if not heads:
        return None
    if any(h.weight.shape != heads[0].weight.shape for h in heads):
        _fail(heads[-1].where, f"a head of shape {tuple(heads[0].weight.shape)} like {heads[0].where}",
              f"{tuple(heads[-1].weight.shape)}")
    return Projection(torch.stack([h.weight for h in heads]).mean(0), torch.stack([h.bias for h in heads]).mean(0),
                      " + ".join(h.where for h in heads))


# ------------------------------------------------------------------------------------------- activations
_PROBE = torch.linspace(-5.0, 5.0, 41, dtype=F64)


def is_hardswish(module) -> bool:
    """nn.Hardswish, or any module that computes Hardswish (timm's own HardSwish variants), checked by value."""
    if isinstance(module, nn.Hardswish):
        return True
    if not isinstance(module, nn.Module) or any(True for _ in module.parameters()):
        return False
    try:
        with torch.no_grad():
            out = module(_PROBE.clone())
    except Exception:  # not an elementwise activation
        return False
    return isinstance(out, torch.Tensor) and out.shape == _PROBE.shape and torch.allclose(
        out.to(F64), F.hardswish(_PROBE), atol=1e-6)


def _require_hardswish(module, where: str) -> None:
    if not is_hardswish(module):
        name = type(module).__name__ if module is not None else "no activation"
        raise UnrecognizedModelError(
            f"optimize: unsupported activation {name} at '{where}': the fused LeViT ops apply Hardswish only "
            f"(timm's experimental SiLU configs such as levit_256d, levit_384_s8, levit_512* are not supported)")


# ------------------------------------------------------------------------------------------- the stem
def _stem_conv(module, where: str) -> Optional[tuple]:
    """(weight, bias, stride, padding), float64 with BN folded, of a Conv2d or a Conv+BN unit (.conv/.linear, .bn);
    None for anything else."""
    layer, bn = module, None
    if not isinstance(module, nn.Conv2d):
        layer = getattr(module, "conv", None) or getattr(module, "linear", None)
        bn = getattr(module, "bn", None)
        if not isinstance(layer, nn.Conv2d) or bn is None:
            return None
    if layer.groups != 1 or layer.dilation != (1, 1) or layer.padding_mode != "zeros" or isinstance(
            layer.padding, str) or layer.kernel_size[0] != layer.kernel_size[1] or layer.stride[0] != layer.stride[1]:
        _fail(where, "a square, ungrouped, undilated, zero-padded Conv2d", repr(layer))
    weight = layer.weight.detach().to(F64)
    bias = _bias64(layer)
    if bn is not None:
        weight, bias = fold_batchnorm(weight, bias, _batchnorm64(bn, f"{where}.bn"))
    elif bias is None:
        bias = weight.new_zeros(weight.shape[0])
    return weight, bias, layer.stride, layer.padding


def _stem(stem: nn.Module, where: str) -> list[StemConv]:
    """Conv(+BN) units with a Hardswish after all but (usually) the last, in order."""
    units: list[list] = []
    for name, child in stem.named_children():
        path = f"{where}.{name}"
        conv = _stem_conv(child, path)
        if conv is not None:
            units.append([conv, False, path])
            continue
        if not units or units[-1][1]:
            _fail(path, "a Conv2d(+BatchNorm) unit of the stem", child)
        _require_hardswish(child, path)
        units[-1][1] = True
    if not units:
        _fail(where, "a stem of Conv2d(+BatchNorm) units with Hardswish between", stem)
    convs = [StemConv(w, b, tuple(s), tuple(p), act, path) for (w, b, s, p), act, path in units]
    for prev, conv in zip(convs, convs[1:]):
        if conv.weight.shape[1] != prev.weight.shape[0]:
            _fail(conv.where, f"a conv over {prev.weight.shape[0]} channels", f"{conv.weight.shape[1]}")
    return convs


def image_sides(stem: list[StemConv], token_side: int, limit: int = 8192) -> tuple[int, int]:
    """(smallest, largest) square image side the stem maps onto a token_side grid (the side is monotone)."""
    sides = []
    for side in range(1, limit + 1):
        out = side
        for conv in stem:
            out = conv.out_side(out)
        if out == token_side:
            sides.append(side)
        elif out > token_side:
            break
    if not sides:
        _fail("stem", f"a stem that can produce a {token_side}×{token_side} token grid", "none does")
    return sides[0], sides[-1]


# ------------------------------------------------------------------------------------------- blocks
def _geometry(module, where: str, resolution, stride: int) -> tuple:
    """heads, key_dim, value_dim, square resolution, scale of an attention module (ours or timm's names)."""
    heads = getattr(module, "heads", getattr(module, "num_heads", None))
    key_dim = getattr(module, "key_dim", None)
    value_dim = getattr(module, "value_dim", getattr(module, "val_dim", None))
    scale = getattr(module, "scale", None)
    if isinstance(resolution, (tuple, list)):
        if len(resolution) != 2 or resolution[0] != resolution[1]:
            _fail(where, "a square attention grid", f"resolution {tuple(resolution)}")
        resolution = resolution[0]
    for name, value in (("heads", heads), ("key_dim", key_dim), ("value_dim", value_dim),
                        ("resolution", resolution)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            _fail(where, f"an attention module with a positive int '{name}'", f"{name}={value!r}")
    if not isinstance(scale, (int, float)) or isinstance(scale, bool):
        _fail(where, "an attention module with a float 'scale'", f"scale={scale!r}")
    biases = getattr(module, "attention_biases", None)
    if not isinstance(biases, torch.Tensor) or tuple(biases.shape) != (heads, resolution * resolution):
        got = tuple(biases.shape) if isinstance(biases, torch.Tensor) else biases
        _fail(f"{where}.attention_biases", f"a ({heads}, {resolution * resolution}) table", got)
    index = getattr(module, "attention_bias_idxs", None)
    if isinstance(index, torch.Tensor) and not index.is_meta:
        want = attention_bias_index(resolution, stride)
        if tuple(index.shape) != tuple(want.shape) or not torch.equal(index.detach().cpu().long(), want):
            _fail(f"{where}.attention_bias_idxs", "LeViT's |dy|·R + |dx| relative-position index",
                  "a different index")
    return heads, key_dim, value_dim, resolution, float(scale), biases.detach().to(F64)


def _check_out(p: Projection, out: int, meaning: str) -> None:
    if p.weight.shape[0] != out:
        _fail(p.where, f"{out} output features ({meaning})", f"{p.weight.shape[0]}")


def _check_in(p: Projection, features: int, meaning: str) -> None:
    if p.weight.shape[1] != features:
        _fail(p.where, f"{features} input features ({meaning})", f"{p.weight.shape[1]}")


def attention(module, where: str, qkv, proj, resolution, tap: Tap) -> AttentionSpec:
    heads, d, dv, r, scale, biases = _geometry(module, where, resolution, 1)
    qkv, proj = projection(qkv, f"{where}.qkv"), projection(proj, f"{where}.proj")
    _check_out(qkv, heads * (2 * d + dv), f"heads {heads} × (2·key_dim {d} + value_dim {dv})")
    _check_in(proj, heads * dv, f"heads {heads} × value_dim {dv}")
    return AttentionSpec(where, qkv, proj, biases, heads, d, dv, r, scale, tap)


def shrink(module, where: str, kv, q, proj, resolution, stride, tap: Tap) -> ShrinkSpec:
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        _fail(where, "a shrink attention with a positive int 'stride'", f"stride={stride!r}")
    heads, d, dv, r, scale, biases = _geometry(module, where, resolution, stride)
    kv, q, proj = (projection(kv, f"{where}.kv"), projection(q, f"{where}.q"),
                   projection(proj, f"{where}.proj"))
    _check_out(kv, heads * (d + dv), f"heads {heads} × (key_dim {d} + value_dim {dv})")
    _check_out(q, heads * d, f"heads {heads} × key_dim {d}")
    _check_in(q, kv.weight.shape[1], "the channels kv reads")
    _check_in(proj, heads * dv, f"heads {heads} × value_dim {dv}")
    return ShrinkSpec(where, kv, q, proj, biases, heads, d, dv, r, stride, scale, tap)


# ------------------------------------------------------------------------------------------- model trees
def _levit_blocks(model: nn.Module) -> list[BlockSpec]:
    """This project's ``blocks``: Residual(body=Attention|MLP) and ShrinkAttention; its activation is Hardswish."""
    specs = []
    for name, block in _child(model, "blocks", "", "a Sequential of blocks").named_children():
        where = f"blocks.{name}"
        body = getattr(block, "body", None)
        # Residual blocks are named by the Residual (whose output verify reads), their weights by the body.
        if isinstance(body, nn.Module) and hasattr(body, "qkv"):
            spec = attention(body, f"{where}.body", body.qkv, _child(body, "proj", f"{where}.body", "proj"),
                             getattr(body, "resolution", None), Tap(block))
            specs.append(replace(spec, where=where))
        elif isinstance(body, nn.Module) and hasattr(body, "fc1"):
            specs.append(replace(_named_mlp(f"{where}.body", body, "fc1", "fc2", Tap(block)), where=where))
        elif hasattr(block, "kv") and hasattr(block, "q"):
            specs.append(shrink(block, where, block.kv, block.q, _child(block, "proj", where, "proj"),
                                getattr(block, "resolution", None), getattr(block, "stride", None), Tap(block)))
        else:
            _fail(where, "Residual(Attention: qkv, proj), Residual(MLP: fc1, fc2) or ShrinkAttention (kv, q, proj)",
                  block if body is None else f"{type(block).__name__} around {_found(body)}")
    return specs


def _named_mlp(where: str, module, first: str, second: str, tap: Tap) -> MLPSpec:
    fc1 = projection(_child(module, first, where, "a projection"), f"{where}.{first}")
    fc2 = projection(_child(module, second, where, "a projection"), f"{where}.{second}")
    _check_in(fc2, fc1.weight.shape[0], "the hidden width of the first projection")
    return MLPSpec(where, fc1, fc2, tap)


def _timm_proj(module, where: str) -> nn.Module:
    """timm's ``proj`` = Sequential(act, ln): checks the activation, returns the projection unit."""
    _require_hardswish(getattr(module, "act", None), f"{where}.act")
    return _child(module, "ln", where, "the projection unit 'ln'")


def _timm_mlp(module, where: str, tap: Tap) -> MLPSpec:
    _require_hardswish(getattr(module, "act", None), f"{where}.act")
    return _named_mlp(where, module, "ln1", "ln2", tap)


def _timm_subsample(down, where: str, stride: int) -> None:
    """timm's query subsampling: Downsample(stride, no pool) or AvgPool2d(kernel 1, stride); nothing else."""
    if isinstance(down, nn.AvgPool2d):
        ok = (down.kernel_size in (1, (1, 1)) and down.stride in (stride, (stride, stride))
              and down.padding in (0, (0, 0)))
    else:
        ok = getattr(down, "stride", None) == stride and getattr(down, "pool", "missing") is None
    if not ok:
        _fail(where, f"a plain stride-{stride} token subsampling (no pooling)", repr(down))


def _timm_blocks(model: nn.Module) -> list[BlockSpec]:
    specs = []
    for s, stage in _child(model, "stages", "", "a Sequential of stages").named_children():
        where = f"stages.{s}"
        down = _child(stage, "downsample", where, "a downsample (or Identity)")
        if not isinstance(down, nn.Identity):
            dw = f"{where}.downsample"
            attn = _child(down, "attn_downsample", dw, "a shrink attention 'attn_downsample'")
            aw = f"{dw}.attn_downsample"
            q = _child(attn, "q", aw, "Sequential(down, ln)")
            _timm_subsample(_child(q, "down", f"{aw}.q", "a subsampling"), f"{aw}.q.down",
                            getattr(attn, "stride", None))
            specs.append(shrink(attn, aw, _child(attn, "kv", aw, "kv"), _child(q, "ln", f"{aw}.q", "ln"),
                                _timm_proj(_child(attn, "proj", aw, "Sequential(act, ln)"), f"{aw}.proj"),
                                getattr(attn, "resolution", None), getattr(attn, "stride", None), Tap(attn)))
            mlp_module = _child(down, "mlp", dw, "an MLP")
            specs.append(_timm_mlp(mlp_module, f"{dw}.mlp", Tap(mlp_module, residual=True)))
        for j, block in _child(stage, "blocks", where, "a Sequential of LevitBlocks").named_children():
            bw = f"{where}.blocks.{j}"
            attn = _child(block, "attn", bw, "an attention 'attn'")
            specs.append(attention(attn, f"{bw}.attn", _child(attn, "qkv", f"{bw}.attn", "qkv"),
                                   _timm_proj(_child(attn, "proj", f"{bw}.attn", "Sequential(act, ln)"),
                                              f"{bw}.attn.proj"),
                                   getattr(attn, "resolution", None), Tap(attn, residual=True)))
            mlp_module = _child(block, "mlp", bw, "an MLP")
            specs.append(_timm_mlp(mlp_module, f"{bw}.mlp", Tap(mlp_module, residual=True)))
    return specs


def _check_chain(blocks: list[BlockSpec], width: int, where: str) -> tuple[int, int]:
    """Grid sides and widths must flow from block to block; returns (the stem's token side, the final width)."""
    first = next((b for b in blocks if b.kind != "mlp"), None)
    if first is None:
        _fail(where, "attention blocks", "only MLPs")
    side = first.resolution
    for b in blocks:
        if b.kind == "mlp":
            _check_in(b.fc1, width, "the width of the tokens it gets")
            _check_out(b.fc2, width, "the width of the tokens, for the residual add")
            continue
        if b.resolution != side:
            _fail(b.where, f"resolution {side} (the grid it gets)", f"resolution {b.resolution}")
        first_proj = b.qkv if b.kind == "attention" else b.kv
        _check_in(first_proj, width, "the width of the tokens it gets")
        if b.kind == "attention":
            _check_out(b.proj, width, "the width of the tokens, for the residual add")
        else:
            side, width = query_grid_side(side, b.stride), b.proj.weight.shape[0]
    return first.resolution, width


def describe(model: nn.Module) -> LeViTDescription:
    """Recognise ``model`` (see the module docstring) and fold it; raises UnrecognizedModelError otherwise."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"optimize: argument 'model' must be a torch.nn.Module, got {type(model).__name__}")
    # The root, and every module whose output depends on the mode (a freshly built Linear may say training=True).
    training = [name or "model" for name, m in model.named_modules() if m.training and (
        m is model or isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.Dropout)))]
    if training:
        raise ValueError(f"optimize: the model is in training mode ({training[0]}"
                         f"{' and others' if len(training) > 1 else ''}); call model.eval() first: BatchNorm "
                         f"folding uses the running statistics")
    is_levit = all(hasattr(model, a) for a in ("stem", "blocks", "head", "head_dist"))
    is_timm = all(hasattr(model, a) for a in ("stem", "stages", "head"))
    if not (is_levit or is_timm):
        _fail("", "a levit.LeViT (stem, blocks, head, head_dist) or a timm Levit/LevitDistilled (stem, stages, "
                  "head)", model)
    stem = _stem(_child(model, "stem", "", "a stem"), "stem")
    if is_levit:
        kind = "levit (BN fused)" if getattr(model, "fused", False) else "levit"
        blocks = _levit_blocks(model)
    else:
        if getattr(model, "global_pool", "avg") != "avg":
            _fail("global_pool", "'avg' (token mean before the head)", repr(model.global_pool))
        conv_kind = bool(getattr(model, "use_conv", False))  # its taps give (B, C, H, W): verify flattens them
        kind = f"timm {type(model).__name__} ({'conv' if conv_kind else 'linear'} kind)"
        blocks = _timm_blocks(model)
    heads = [h for h in (_head(getattr(model, "head", None), "head"),
                         _head(getattr(model, "head_dist", None), "head_dist")) if h is not None]
    token_side, width = _check_chain(blocks, stem[-1].weight.shape[0], "blocks")
    head = merged_head(heads)
    if head is not None:
        _check_in(head, width, "the width of the last tokens")
    return LeViTDescription(kind, stem, Tap(model.stem), blocks, head, len(heads), token_side,
                            image_sides(stem, token_side))
