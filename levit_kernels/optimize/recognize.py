"""Recognise a model by its structure and describe it as block specs: the shared helpers and the dispatcher.

:func:`describe` asks each adapter of :data:`levit_kernels.optimize.families.FAMILIES` whether it matches the model
and lets the first that does describe it; a model none matches is refused with a message that lists the families.
No model package is imported: adapters read attributes, weight shapes and torch.nn classes only, with the helpers
here (projections with their BatchNorm folded, activations recognised by value, attention geometry, the stem, the
chain of widths and grid sides). Anything unexpected raises :class:`UnrecognizedModelError` naming the module, what
was expected and what was found.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from levit_kernels.optimize import fold
from levit_kernels.optimize.specs import (AttentionSpec, BlockSpec, Conv, MLPSpec, ModelDescription, Projection,
                                          ShrinkSpec, Tap, UnrecognizedModelError, fail, grid_text)
from levit_kernels.reference import attention_bias_index, grid, grid_sides, query_grid

F64 = torch.float64


def child(module: nn.Module, name: str, where: str, expected: str) -> nn.Module:
    """``module.<name>``, which must be a module; ``where`` is ``module``'s path in the model."""
    sub = getattr(module, name, None)
    if not isinstance(sub, nn.Module):
        fail(f"{where}.{name}" if where else name, expected, sub)
    return sub


def has(module: nn.Module, *names: str) -> bool:
    """Whether ``module`` has every attribute of ``names`` (an adapter's structural match)."""
    return all(hasattr(module, n) for n in names)


# ------------------------------------------------------------------------------------------- projections
def pointwise_weight(layer) -> Optional[torch.Tensor]:
    """(out, in) float64 weight of a Linear or a 1×1 stride-1 conv; None for anything else."""
    if isinstance(layer, nn.Linear):
        return layer.weight.detach().to(F64)
    if (isinstance(layer, nn.Conv2d) and layer.kernel_size == (1, 1) and layer.stride == (1, 1)
            and layer.padding in ((0, 0), "valid") and layer.dilation == (1, 1) and layer.groups == 1):
        return layer.weight.detach().to(F64)[:, :, 0, 0]
    return None


def plain_projection(layer, where: str, bn=None) -> Projection:
    """A Linear / 1×1 conv, followed by the BatchNorm ``bn`` when given; folded."""
    weight = pointwise_weight(layer)
    if weight is None:
        fail(where, "a Linear or 1×1 stride-1 conv", layer)
    bias = fold.as64(layer.bias)
    if bn is not None:
        return Projection(*fold.batchnorm_after(weight, bias, bn, f"{where}.bn"), where)
    return Projection(weight, bias if bias is not None else weight.new_zeros(weight.shape[0]), where)


def projection(module: nn.Module, where: str) -> Projection:
    """A Linear / 1×1 conv, or a module holding one as ``linear`` (or ``conv``) followed by a BatchNorm ``bn``;
    folded."""
    if pointwise_weight(module) is not None:
        return plain_projection(module, where)
    layer, bn = getattr(module, "linear", None) or getattr(module, "conv", None), getattr(module, "bn", None)
    if pointwise_weight(layer) is None or bn is None:
        fail(where, "a Linear or 1×1 conv, or a Linear/Conv+BatchNorm unit (.linear or .conv, .bn)", module)
    return plain_projection(layer, where, bn)


def classifier(module, where: str) -> Optional[Projection]:
    """A classifier head: a Linear, or BatchNorm ``bn`` → Linear ``linear`` (dropout allowed); None if absent."""
    if module is None or isinstance(module, nn.Identity):
        return None
    if isinstance(module, nn.Linear):
        return plain_projection(module, where)
    bn, layer = getattr(module, "bn", None), getattr(module, "linear", None)
    if not isinstance(layer, nn.Linear) or bn is None:
        fail(where, "a Linear, or a BatchNorm+Linear head (.bn, .linear)", module)
    weight = layer.weight.detach().to(F64)
    return Projection(*fold.batchnorm_before(bn, weight, fold.as64(layer.bias), f"{where}.bn"), where)


def check_out(p: Projection, out: int, meaning: str) -> None:
    if p.weight.shape[0] != out:
        fail(p.where, f"{out} output features ({meaning})", f"{p.weight.shape[0]}")


def check_in(p: Projection, features: int, meaning: str) -> None:
    if p.weight.shape[1] != features:
        fail(p.where, f"{features} input features ({meaning})", f"{p.weight.shape[1]}")


# ------------------------------------------------------------------------------------------- activations
_PROBE = torch.linspace(-5.0, 5.0, 41, dtype=F64)
# What each name computes, to recognise any module computing it (timm's own HardSwish/GELU variants included).
_ACTIVATIONS = {"hardswish": F.hardswish, "gelu": F.gelu, "relu": F.relu}
_NAMES = {"hardswish": "Hardswish", "gelu": "GELU (erf)", "relu": "ReLU"}


def activation_of(module) -> Optional[str]:
    """"hardswish", "gelu" (the exact erf form) or "relu" when ``module`` computes it (checked by value on a probe,
    so tanh-approximated GELU is not "gelu"); None for anything else."""
    if not isinstance(module, nn.Module) or any(True for _ in module.parameters()):
        return None
    try:
        with torch.no_grad():
            out = module(_PROBE.clone())
    except Exception:  # not an elementwise activation
        return None
    if not isinstance(out, torch.Tensor) or out.shape != _PROBE.shape:
        return None
    return next((name for name, fn in _ACTIVATIONS.items()
                 if torch.allclose(out.to(F64), fn(_PROBE), rtol=1e-6, atol=1e-6)), None)


def require_activation(module, where: str, allowed: tuple[str, ...], hint: str = "") -> str:
    """The name of the activation ``module`` computes, which must be one of ``allowed``; raises otherwise."""
    name = activation_of(module)
    if name not in allowed:
        what = type(module).__name__ if module is not None else "no activation"
        raise UnrecognizedModelError(
            f"optimize: unsupported activation {what} at '{where}': this model's fused ops apply "
            f"{' or '.join(_NAMES[a] for a in allowed)} only{hint}")
    return name


def is_dropout(module) -> bool:
    """A module that is the identity in eval mode (dropout, or Identity)."""
    return isinstance(module, (nn.Identity, nn.modules.dropout._DropoutNd))


# ------------------------------------------------------------------------------------------- attention
def positive_int(value, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        fail(where, f"an attention module with a positive int '{name}'", f"{name}={value!r}")
    return value


def geometry(module, where: str, resolution, stride: int) -> tuple:
    """heads, key_dim, value_dim, resolution (R, or (Rh, Rw) when not square), scale and the (H, Rh·Rw) float64
    bias table of an attention module that names them (this project's or timm's attribute names)."""
    heads = getattr(module, "heads", getattr(module, "num_heads", None))
    key_dim = getattr(module, "key_dim", None)
    value_dim = getattr(module, "value_dim", getattr(module, "val_dim", None))
    scale = getattr(module, "scale", None)
    sides = (resolution,) * 2
    if isinstance(resolution, (tuple, list)):
        if len(resolution) != 2:
            fail(where, "an attention grid R or (Rh, Rw)", f"resolution {tuple(resolution)}")
        sides = tuple(resolution)
    for name, value in (("heads", heads), ("key_dim", key_dim), ("value_dim", value_dim),
                        ("resolution", sides[0]), ("resolution", sides[1]), ("stride", stride)):
        positive_int(value, name, where)
    resolution, points = grid(*sides), sides[0] * sides[1]
    if not isinstance(scale, (int, float)) or isinstance(scale, bool):
        fail(where, "an attention module with a float 'scale'", f"scale={scale!r}")
    biases = getattr(module, "attention_biases", None)
    if not isinstance(biases, torch.Tensor) or tuple(biases.shape) != (heads, points):
        got = tuple(biases.shape) if isinstance(biases, torch.Tensor) else biases
        fail(f"{where}.attention_biases", f"a ({heads}, {points}) table (the {grid_text(resolution)} grid)", got)
    check_bias_index(getattr(module, "attention_bias_idxs", None), f"{where}.attention_bias_idxs", resolution,
                     stride)
    return heads, key_dim, value_dim, resolution, float(scale), biases.detach().to(F64)


def check_bias_index(index, where: str, resolution, stride: int) -> None:
    """A model's own bias index buffer (when it keeps one) must be LeViT's |dy|·Rw + |dx| one."""
    if isinstance(index, torch.Tensor) and not index.is_meta:
        want = attention_bias_index(resolution, stride)
        if tuple(index.shape) != tuple(want.shape) or not torch.equal(index.detach().cpu().long(), want):
            fail(where, "LeViT's |dy|·R + |dx| relative-position index", "a different index")


def attention(where: str, qkv: Projection, proj: Projection, geometry_: tuple, tap: Tap,
              activation: Optional[str] = "hardswish", norm_eps: Optional[float] = None) -> AttentionSpec:
    """A residual attention spec from its folded projections and :func:`geometry`; shapes checked."""
    heads, d, dv, r, scale, biases = geometry_
    check_out(qkv, heads * (2 * d + dv), f"heads {heads} × (2·key_dim {d} + value_dim {dv})")
    check_in(proj, heads * dv, f"heads {heads} × value_dim {dv}")
    return AttentionSpec(where, qkv, proj, biases, heads, d, dv, r, scale, tap, activation, norm_eps)


def shrink(where: str, kv: Projection, q: Projection, proj: Projection, geometry_: tuple, stride, tap: Tap,
           activation: Optional[str] = "hardswish") -> ShrinkSpec:
    """A shrink attention spec from its folded projections and :func:`geometry`; shapes checked."""
    positive_int(stride, "stride", where)
    heads, d, dv, r, scale, biases = geometry_
    check_out(kv, heads * (d + dv), f"heads {heads} × (key_dim {d} + value_dim {dv})")
    check_out(q, heads * d, f"heads {heads} × key_dim {d}")
    check_in(q, kv.weight.shape[1], "the channels kv reads")
    check_in(proj, heads * dv, f"heads {heads} × value_dim {dv}")
    return ShrinkSpec(where, kv, q, proj, biases, heads, d, dv, r, stride, scale, tap, activation)


def mlp(where: str, fc1: Projection, fc2: Projection, tap: Tap, activation: Optional[str] = "hardswish",
        norm_eps: Optional[float] = None) -> MLPSpec:
    check_in(fc2, fc1.weight.shape[0], "the hidden width of the first projection")
    return MLPSpec(where, fc1, fc2, tap, activation, norm_eps)


# ------------------------------------------------------------------------------------------- convolutions
def conv2d(layer, where: str, bn=None, activation: Optional[str] = None) -> Conv:
    """A square, ungrouped, undilated, zero-padded Conv2d, the BatchNorm ``bn`` after it folded."""
    if not isinstance(layer, nn.Conv2d):
        fail(where, "a Conv2d", layer)
    if layer.groups != 1 or layer.dilation != (1, 1) or layer.padding_mode != "zeros" or isinstance(
            layer.padding, str) or layer.kernel_size[0] != layer.kernel_size[1] or layer.stride[0] != layer.stride[1]:
        fail(where, "a square, ungrouped, undilated, zero-padded Conv2d", repr(layer))
    weight, bias = layer.weight.detach().to(F64), fold.as64(layer.bias)
    if bn is not None:
        weight, bias = fold.batchnorm_after(weight, bias, bn, f"{where}.bn")
    elif bias is None:
        bias = weight.new_zeros(weight.shape[0])
    return Conv(weight, bias, tuple(layer.stride), tuple(layer.padding), activation, where)


def stem(module: nn.Module, where: str, activations: tuple[str, ...], hint: str = "") -> list[Conv]:
    """The children of a stem, in order: Conv2d units (a Conv2d; a Conv+BN unit with ``.conv``/``.linear`` and
    ``.bn``; or a Conv2d then a BatchNorm child), each optionally followed by one of ``activations``."""
    units: list[dict] = []
    for name, sub in module.named_children():
        path = f"{where}.{name}"
        layer = sub if isinstance(sub, nn.Conv2d) else getattr(sub, "conv", None) or getattr(sub, "linear", None)
        if isinstance(layer, nn.Conv2d):
            bn = None if sub is layer else getattr(sub, "bn", None)
            if sub is not layer and bn is None:
                fail(path, "a Conv2d(+BatchNorm) unit of the stem", sub)
            units.append(dict(layer=layer, bn=bn, activation=None, where=path))
        elif isinstance(sub, nn.modules.batchnorm._BatchNorm) and units and units[-1]["bn"] is None \
                and units[-1]["activation"] is None:
            units[-1]["bn"] = sub
        elif units and units[-1]["activation"] is None:
            units[-1]["activation"] = require_activation(sub, path, activations, hint)
        else:
            fail(path, "a Conv2d(+BatchNorm) unit of the stem", sub)
    if not units:
        fail(where, "a stem of Conv2d(+BatchNorm) units with activations between", module)
    convs = [conv2d(u["layer"], u["where"], u["bn"], u["activation"]) for u in units]
    for prev, conv in zip(convs, convs[1:]):
        if conv.weight.shape[1] != prev.weight.shape[0]:
            fail(conv.where, f"a conv over {prev.weight.shape[0]} channels", f"{conv.weight.shape[1]}")
    return convs


def image_ranges(stem_convs: list[Conv], token_side, limit: int = 8192) -> tuple[tuple[int, int], tuple[int, int]]:
    """(smallest, largest) image height, and width, the stem maps onto the token grid (each side is monotone)."""
    ranges = []
    for axis, token in enumerate(grid_sides(token_side)):
        sides = []
        for side in range(1, limit + 1):
            out = side
            for conv in stem_convs:
                out = conv._out(out, axis)
            if out == token:
                sides.append(side)
            elif out > token:
                break
        if not sides:
            fail("stem", f"a stem that can produce a {grid_text(token_side)} token grid", "none does")
        ranges.append((sides[0], sides[-1]))
    return ranges[0], ranges[1]


# ------------------------------------------------------------------------------------------- the chain
def check_chain(blocks: list[BlockSpec], width: int, side: Optional[int], where: str) -> tuple[int, int]:
    """Grid sides and widths must flow from block to block, from the stem's ``width`` (and token ``side`` when the
    first block does not fix it); returns (the stem's token side, the final width)."""
    if side is None:
        first = next((b for b in blocks if b.kind != "mlp"), None)
        if first is None:
            fail(where, "attention blocks", "only MLPs")
        side = first.resolution if first.kind in ("attention", "shrink") else first.side
    stem_side = side
    for b in blocks:
        if b.kind == "mlp":
            check_in(b.fc1, width, "the width of the tokens it gets")
            check_out(b.fc2, width, "the width of the tokens, for the residual add")
            continue
        block_grid = b.resolution if b.kind in ("attention", "shrink") else b.side
        if block_grid != side:
            fail(b.where, f"a {grid_text(side)} grid (the one it gets)", grid_text(block_grid))
        if b.kind == "pool":
            if b.layer_scale.numel() != width:
                fail(b.where, f"a layer scale of {width} channels (the width of the tokens)",
                     f"{b.layer_scale.numel()}")
        elif b.kind == "conv":
            if b.conv.weight.shape[1] != width:
                fail(b.where, f"a conv over {width} channels (the width of the tokens)", f"{b.conv.weight.shape[1]}")
            side, width = b.conv.out_side(side), b.conv.weight.shape[0]
        else:
            check_in(b.qkv if b.kind == "attention" else b.kv, width, "the width of the tokens it gets")
            if b.kind == "attention":
                check_out(b.proj, width, "the width of the tokens, for the residual add")
            else:
                side, width = grid(*query_grid(side, b.stride)), b.proj.weight.shape[0]
    return stem_side, width


def refuse_training(model: nn.Module) -> None:
    """BatchNorm folding reads the running statistics: a model (or a mode-dependent module) in training is refused."""
    # The root, and every module whose output depends on the mode (a freshly built Linear may say training=True).
    training = [name or "model" for name, m in model.named_modules() if m.training and (
        m is model or isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)))]
    if training:
        raise ValueError(f"optimize: the model is in training mode ({training[0]}"
                         f"{' and others' if len(training) > 1 else ''}); call model.eval() first: BatchNorm "
                         f"folding uses the running statistics")


def finish(source: str, stem_convs: list[Conv], stem_tap: Tap, blocks: list[BlockSpec],
           head_spec, first_side: Optional[int] = None) -> ModelDescription:
    """Check the chain of ``blocks`` from the stem to the head and build the description."""
    side, width = check_chain(blocks, stem_convs[-1].weight.shape[0], first_side, "blocks")
    if head_spec.classifier is not None:
        check_in(head_spec.classifier, width, "the width of the last tokens")
    return ModelDescription(source, stem_convs, stem_tap, blocks, head_spec, side, image_ranges(stem_convs, side))


def describe(model: nn.Module) -> ModelDescription:
    """Recognise ``model`` with the first family adapter that matches it, and fold it; raises
    UnrecognizedModelError (listing the families) when none does."""
    from levit_kernels.optimize.families import FAMILIES

    if not isinstance(model, nn.Module):
        raise TypeError(f"optimize: argument 'model' must be a torch.nn.Module, got {type(model).__name__}")
    refuse_training(model)
    for family in FAMILIES:
        if family.matches(model):
            return family.describe(model)
    fail("", "a model of one of the families " + "; ".join(f"{f.NAME} ({f.STRUCTURE})" for f in FAMILIES), model)


__all__ = ["describe", "UnrecognizedModelError"]
