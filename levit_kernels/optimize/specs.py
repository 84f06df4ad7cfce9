"""Block specs: what the fused model is built from, folded (float64) and backend-neutral.

A family adapter (:mod:`levit_kernels.optimize.families`) turns a model into a :class:`ModelDescription`: the stem
convolutions, then a chain of block specs over channels-last tokens (B, N, C), then the head. Each spec carries the
activation it applies and the normalisation it starts with, so :mod:`levit_kernels.optimize.fused` builds every
family from the same few modules without knowing any family's attribute names. Every BatchNorm, LayerNorm affine
and LayerScale is already folded into the projections here (:mod:`levit_kernels.optimize.fold`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import torch
import torch.nn as nn

from levit_kernels.reference import grid, grid_sides

# A grid: an int S for S×S, or (H, W) when not square (levit.config.Grid; reference.grid makes the canonical form).
Grid = Union[int, tuple[int, int]]


def grid_text(g: Grid) -> str:
    """'14×14' or '28×50'."""
    h, w = grid_sides(g)
    return f"{h}×{w}"


class UnrecognizedModelError(ValueError):
    """The model is not one this package can optimize; the message names the module and what was expected."""


def found(module) -> str:
    """What a module is, for an error message: its class and first children."""
    if module is None:
        return "nothing"
    children = [name for name, _ in module.named_children()] if isinstance(module, nn.Module) else []
    inside = f" (children: {', '.join(children[:8])}{', ...' if len(children) > 8 else ''})" if children else ""
    return f"{type(module).__name__}{inside}"


def fail(where: str, expected: str, what) -> None:
    """Raise UnrecognizedModelError: at ``where`` we expected ``expected`` and found ``what`` (a module or text)."""
    what = found(what) if what is None or isinstance(what, nn.Module) else str(what)
    raise UnrecognizedModelError(f"optimize: unrecognised structure at '{where or 'model'}': expected {expected}, "
                                 f"found {what}")


@dataclass(frozen=True)
class Projection:
    """A Linear (or 1×1 conv) with everything around it folded: ``x @ weightᵀ + bias``, float64."""

    weight: torch.Tensor  # (out, in)
    bias: torch.Tensor    # (out,)
    where: str

    @property
    def features(self) -> tuple[int, int]:
        return self.weight.shape[1], self.weight.shape[0]


@dataclass(frozen=True)
class Conv:
    """A PyTorch convolution with its BatchNorm folded, float64, then ``activation`` (None, "hardswish", "relu",
    "gelu"): the stem's units and the downsamplings between stages."""

    weight: torch.Tensor  # (out, in, kh, kw)
    bias: torch.Tensor
    stride: tuple[int, int]
    padding: tuple[int, int]
    activation: Optional[str]
    where: str

    def out_side(self, side):
        """Output side on a side×side map, or the output grid of an (H, W) map (canonical: an int when square)."""
        if isinstance(side, tuple):
            return grid(*(self._out(s, axis) for axis, s in enumerate(side)))
        return self._out(side, 0)

    def _out(self, side: int, axis: int) -> int:
        return (side + 2 * self.padding[axis] - self.weight.shape[2 + axis]) // self.stride[axis] + 1



@dataclass(frozen=True)
class Tap:
    """Where :func:`levit_kernels.verify` reads a block's output in the source model: ``module``'s output (its input
    with ``of_input``: the block's output is what the next module gets), plus the residual when the model adds it
    outside the module — ``module``'s own input (``residual``), or the input of ``base`` (the module the block starts
    with, e.g. the norm or token mixer before a LayerScale)."""

    module: nn.Module
    residual: bool = False
    base: Optional[nn.Module] = None
    of_input: bool = False


@dataclass(frozen=True)
class AttentionSpec:
    """Residual attention: [LayerNorm without affine (``norm_eps``)] → qkv projection → biased attention with
    ``activation`` → proj (+ x, the block's input)."""

    where: str
    qkv: Projection
    proj: Projection
    attention_biases: torch.Tensor  # (H, Rh·Rw)
    heads: int
    key_dim: int
    value_dim: int
    resolution: Grid
    scale: float
    tap: Tap
    activation: Optional[str] = "hardswish"
    norm_eps: Optional[float] = None
    stride: int = 1
    kind: str = "attention"


@dataclass(frozen=True)
class ShrinkSpec:
    """Shrink attention (no residual): kv projection, queries from the stride-s tokens, ``activation``, proj."""

    where: str
    kv: Projection
    q: Projection
    proj: Projection
    attention_biases: torch.Tensor
    heads: int
    key_dim: int
    value_dim: int
    resolution: Grid
    stride: int
    scale: float
    tap: Tap
    activation: Optional[str] = "hardswish"
    kind: str = "shrink"


@dataclass(frozen=True)
class MLPSpec:
    """Residual MLP: [LayerNorm without affine (``norm_eps``)] → fc1, ``activation``, fc2 (+ x, the block's input)."""

    where: str
    fc1: Projection
    fc2: Projection
    tap: Tap
    activation: Optional[str] = "hardswish"
    norm_eps: Optional[float] = None
    kind: str = "mlp"


@dataclass(frozen=True)
class PoolSpec:
    """EfficientFormer's pooling token mixer on the side×side (or H×W) map: ``x + layer_scale · (avgpool(x) − x)``."""

    where: str
    layer_scale: torch.Tensor  # (C,), float64
    pool_size: int
    side: Grid
    tap: Tap
    kind: str = "pool"


@dataclass(frozen=True)
class ConvSpec:
    """A convolution between stages (the tokens viewed as a side×side (or H×W) channels-last map, and back)."""

    where: str
    conv: Conv
    side: Grid
    tap: Tap
    kind: str = "conv"


@dataclass(frozen=True)
class UnfoldSpec:
    """A soft split (``nn.Unfold``) of the tokens viewed as a side×side map: every kernel×kernel patch (zero padded,
    stride ``stride``) becomes one token of C·kernel² channels, in ``order`` "cf" (c, ki, kj: nn.Unfold's) or "cl"
    (ki, kj, c: a ViT's patchify rearrange)."""

    where: str
    kernel: int
    stride: int
    padding: int
    side: int
    order: str
    tap: Tap
    kind: str = "unfold"

    def out_side(self) -> int:
        return (self.side + 2 * self.padding - self.kernel) // self.stride + 1


@dataclass(frozen=True)
class SoftmaxAttentionSpec:
    """Plain multi-head attention over any tokens: [LayerNorm without affine (``norm_eps``)] → qkv projection laid
    out [q | k | v] (each head-major) → softmax attention (the flash ``attention`` op) → proj (None: the identity)
    + the residual: the block's input (``residual="input"``), v (``"v"``: T2T-ViT's token transformer, whose
    input and output widths differ) or nothing (None)."""

    where: str
    qkv: Projection
    proj: Optional[Projection]
    heads: int
    key_dim: int
    value_dim: int
    scale: float
    tap: Tap
    norm_eps: Optional[float] = None
    residual: Optional[str] = "input"
    kind: str = "softmax"


@dataclass(frozen=True)
class PerformerSpec:
    """T2T-ViT's performer token layer: LayerNorm → kqv → ``x = v + proj(performer_attention(q, k, v, w))`` →
    ``x + fc2(gelu(fc1(LayerNorm(x))))``; both LayerNorm affines folded into kqv / fc1. ``features`` is the
    frozen (m, D) random matrix w."""

    where: str
    kqv: Projection
    features: torch.Tensor
    eps: float
    proj: Projection
    fc1: Projection
    fc2: Projection
    norm1_eps: float
    norm2_eps: float
    tap: Tap
    kind: str = "performer"


@dataclass(frozen=True)
class LayerNormSpec:
    """A LayerNorm with its affine (nothing after it to fold it into: an unfold's zero padding follows)."""

    where: str
    weight: Optional[torch.Tensor]
    bias: Optional[torch.Tensor]
    eps: float
    tap: Tap
    kind: str = "norm"


@dataclass(frozen=True)
class LinearSpec:
    """[LayerNorm without affine (``norm_eps``)] → a projection, no residual (a ViT's patch embedding)."""

    where: str
    proj: Projection
    tap: Tap
    norm_eps: Optional[float] = None
    kind: str = "linear"


@dataclass(frozen=True)
class ClassTokenSpec:
    """The class tokens (``cls``: (n_cls, C), possibly none) prepended to the tokens, then the position table
    ``pos`` (n_cls + N, C) added."""

    where: str
    cls: torch.Tensor
    pos: torch.Tensor
    tap: Tap
    kind: str = "tokens"


BlockSpec = Union[AttentionSpec, ShrinkSpec, MLPSpec, PoolSpec, ConvSpec, UnfoldSpec, SoftmaxAttentionSpec,
                  PerformerSpec, LayerNormSpec, LinearSpec, ClassTokenSpec]


@dataclass(frozen=True)
class HeadSpec:
    """[LayerNorm without affine (``norm_eps``; its affine folded into ``classifier``)] → token mean (or the class
    token) → the merged classifier (None when the model has none: the head returns the pooled features)."""

    classifier: Optional[Projection]
    heads_merged: int              # how many eval heads were averaged into ``classifier``
    norm_eps: Optional[float] = None
    pool: str = "mean"             # "mean" over the tokens, or "cls": the first (class) token


@dataclass(frozen=True)
class ModelDescription:
    """A recognised model: folded float64 weights and every size the fused model needs."""

    source: str                     # e.g. "timm LevitDistilled (conv kind)"
    stem: list[Conv]
    stem_tap: Tap
    blocks: list[BlockSpec]
    head_spec: HeadSpec
    token_side: Grid                # side of the token grid the stem produces ((Rh, Rw) when not square)
    image_ranges: tuple[tuple[int, int], tuple[int, int]]  # (smallest, largest) image height, and width, the stem
    #                                                        maps onto that grid

    @property
    def image_sides(self):
        """(smallest, largest) image side for a square token grid; ((h_lo, h_hi), (w_lo, w_hi)) otherwise."""
        rows, cols = self.image_ranges
        return rows if rows == cols else self.image_ranges

    @property
    def in_channels(self) -> int:
        return self.stem[0].weight.shape[1]

    @property
    def head(self) -> Optional[Projection]:
        """The merged eval classifier; None when the model has no classifier."""
        return self.head_spec.classifier

    @property
    def heads_merged(self) -> int:
        return self.head_spec.heads_merged

    def activations(self) -> set[Optional[str]]:
        """Every activation a block of the description applies (what the backend's ops must support)."""
        return {b.activation for b in self.blocks if hasattr(b, "activation")}

    def ops_needed(self) -> set[str]:
        """The op names beyond linear/mlp/attention that the fused blocks call."""
        needed = {"pool_mixer"} if any(b.kind == "pool" for b in self.blocks) else set()
        if self.head_spec.norm_eps is not None or any(getattr(b, "norm_eps", None) is not None for b in self.blocks) \
                or any(b.kind in ("performer", "norm") for b in self.blocks):
            needed.add("layer_norm")
        if any(b.kind == "softmax" for b in self.blocks):
            needed.add("attention")
        return needed

