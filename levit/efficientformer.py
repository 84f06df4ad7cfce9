"""Paper-exact pure-PyTorch EfficientFormer (Li et al., NeurIPS 2022): L1, L3 and L7, the eager reference of the
family in levit-kernels.

Maps are channel-major (B, C, H, W) like timm's and the official code until the last stage flattens them to tokens
(B, N, C). Every op the kernels replace goes through its one reference in :mod:`levit_kernels.reference`: the
Meta4D mixer ``x + ls1·(avgpool3×3(x) − x)`` is :func:`~levit_kernels.reference.pool_mixer` (on a channels-last
``permute`` view), the Meta3D attention :func:`~levit_kernels.reference.biased_attention` (activation None),
LayerNorm :func:`~levit_kernels.reference.layer_norm`, GELU :func:`~levit_kernels.reference.apply_activation` and the
Meta3D MLP :func:`~levit_kernels.reference.mlp`.

Module tree of ``EfficientFormer`` (the block indices are timm's and the official code's, Flatten included, so the
checkpoint layouts map unit by unit, see :mod:`levit.checkpoint_efficientformer`)::

    stem: Stem                   conv1, conv2 (ConvBN: .conv with bias, .bn), ReLU after each (act1, act2)
    stages: Sequential of Stage  .downsample: ConvBN (3×3 s2, no activation; nn.Identity in stage 0)
                                 .blocks: Sequential of
        Meta4D                   .ls1 (LayerScale, taken by the pool mixer), .mlp (ConvMLP: .fc1, .fc2 ConvBN 1×1),
                                 .ls2 (LayerScale)
        Flatten                  last stage only, before its first Meta3D: (B, C, H, W) → (B, H·W, C)
        Meta3D                   .norm1 (LayerNorm), .token_mixer (Attention: .qkv, .proj Linear,
                                 .attention_biases (8, Rh·Rw)), .ls1, .norm2, .mlp (LinearMLP: .fc1, .fc2), .ls2
    norm: LayerNorm; head, head_dist: Linear (head_dist is None without distillation)

:meth:`EfficientFormer.fuse` folds every BatchNorm into the conv before it and every LayerScale the math allows
(see :func:`fuse`); after it a Meta4D's MLP is a :class:`PointwiseMLP` running the ``mlp`` reference channels-last.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import torch
import torch.nn as nn

from levit import registry
from levit.checkpoint import load_checkpoint
from levit.config import Grid, downsampled_side, image_grid
from levit.layers import ConvBN, _linear_with, fuse_modules
from levit.model import LeViT, _BiasedAttentionBase, check_stages, tokens_to_map
from levit.model import randomize_ as _randomize_batchnorms_and_biases
from levit_kernels import reference

ACTIVATION = "gelu"  # the exact erf form, torch's default, as nn.GELU() in both timm and the official code
STEM_CONVS = 2         # Conv3×3 s2 + BN + ReLU twice: 224 → 56
DOWNSAMPLINGS = 3      # Conv3×3 s2 + BN between the four stages: 56 → 28 → 14 → 7


@dataclass(frozen=True)
class EfficientFormerSpec:
    """One variant: width and depth per stage; the last ``attention_blocks`` blocks of the last stage are Meta3D."""

    name: str
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    attention_blocks: int
    mlp_ratio: int = 4
    pool_size: int = 3
    heads: int = 8
    key_dim: int = 32
    attn_ratio: int = 4  # value dim = attn_ratio · key_dim
    layer_scale_init: float = 1e-5

    @property
    def value_dim(self) -> int:
        return self.attn_ratio * self.key_dim


SPECS: dict[str, EfficientFormerSpec] = {spec.name: spec for spec in (
    EfficientFormerSpec("efficientformer_l1", (48, 96, 224, 448), (3, 2, 6, 4), 1),
    EfficientFormerSpec("efficientformer_l3", (64, 128, 320, 512), (4, 4, 12, 6), 4),
    EfficientFormerSpec("efficientformer_l7", (96, 192, 384, 768), (6, 6, 18, 8), 8),
)}
MODEL_NAMES = tuple(SPECS)


def get_spec(name: Union[str, EfficientFormerSpec]) -> EfficientFormerSpec:
    """The spec of ``name`` (a spec passes through); unknown names raise ValueError listing the valid ones."""
    if isinstance(name, EfficientFormerSpec):
        return name
    try:
        return SPECS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown EfficientFormer variant {name!r}; valid names: {', '.join(MODEL_NAMES)}") from None


def stage_sides(img_size: Grid = 224) -> tuple[Grid, ...]:
    """Map side of each stage (56, 28, 14, 7 for 224; (112, 200) … (14, 25) for (448, 800)): every stem conv and
    downsampling halves each side, rounding up."""
    side = image_grid(img_size)
    for _ in range(STEM_CONVS):
        side = downsampled_side(side)
    sides = [side]
    for _ in range(DOWNSAMPLINGS):
        sides.append(downsampled_side(sides[-1]))
    return tuple(sides)


class LayerScale(nn.Module):
    """Per-channel scale ``gamma`` (init 1e-5): over the last dim of tokens, or dim 1 of (B, C, H, W) maps."""

    def __init__(self, channels: int, init: float, channels_first: bool):
        super().__init__()
        self.channels_first = channels_first
        self.gamma = nn.Parameter(torch.full((channels,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (self.gamma[:, None, None] if self.channels_first else self.gamma)

    def extra_repr(self) -> str:
        return f"{self.gamma.numel()}, channels_first={self.channels_first}"


@torch.no_grad()
def _scale_rows(weight: torch.Tensor, bias: torch.Tensor, gamma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``gamma · (W x + b)`` as one layer: row o of W (any trailing dims) and b[o] times gamma[o]."""
    return weight * gamma.reshape(-1, *([1] * (weight.dim() - 1))), bias * gamma


class Stem(nn.Sequential):
    """ConvBN 3×3 s2 (3 → C/2), ReLU, ConvBN 3×3 s2 (C/2 → C), ReLU."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = ConvBN(3, channels // 2, 3, 2, 1, bias=True)  # conv biases: both checkpoint layouts have them
        self.act1 = nn.ReLU()
        self.conv2 = ConvBN(channels // 2, channels, 3, 2, 1, bias=True)
        self.act2 = nn.ReLU()


class ConvMLP(nn.Module):
    """Conv1×1+BN (C → hidden), GELU, Conv1×1+BN (hidden → C), on (B, C, H, W) maps (timm ``ConvMlpWithNorm``)."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.fc1 = ConvBN(channels, hidden, 1, bias=True)
        self.fc2 = ConvBN(hidden, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(reference.apply_activation(self.fc1(x), ACTIVATION))

    def fuse(self, layer_scale: Optional[torch.Tensor] = None) -> "PointwiseMLP":
        """Both BNs folded and ``layer_scale`` (the ls2 that multiplies this MLP's output) into fc2."""
        fc1, fc2 = self.fc1.fuse(), self.fc2.fuse()
        w2, b2 = (fc2.weight, fc2.bias) if layer_scale is None else _scale_rows(fc2.weight, fc2.bias, layer_scale)
        return PointwiseMLP(_linear_with(fc1.weight.flatten(1), fc1.bias), _linear_with(w2.flatten(1), b2))


class PointwiseMLP(nn.Module):
    """A fused :class:`ConvMLP`: the ``mlp`` reference (Linear, GELU, Linear) on a channels-last view of the map."""

    def __init__(self, fc1: nn.Linear, fc2: nn.Linear):
        super().__init__()
        self.fc1, self.fc2 = fc1, fc2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = reference.mlp(x.permute(0, 2, 3, 1), self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias,
                          ACTIVATION, residual=False)
        return y.permute(0, 3, 1, 2)


class Meta4D(nn.Module):
    """``x + ls1·(avgpool(x) − x)`` (the pool mixer, one reference op), then ``x + ls2·MLP(x)``, on (B, C, H, W)."""

    def __init__(self, channels: int, spec: EfficientFormerSpec):
        super().__init__()
        self.channels, self.pool_size = channels, spec.pool_size
        self.ls1 = LayerScale(channels, spec.layer_scale_init, channels_first=True)
        self.mlp: nn.Module = ConvMLP(channels, spec.mlp_ratio * channels)
        self.ls2: nn.Module = LayerScale(channels, spec.layer_scale_init, channels_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = reference.pool_mixer(x.permute(0, 2, 3, 1), self.ls1.gamma, self.pool_size).permute(0, 3, 1, 2)
        return x + self.ls2(self.mlp(x))

    def fuse(self) -> None:
        """BNs and ls2 into the MLP (ls1 stays: the pool mixer takes it, it scales ``pool(x) − x``)."""
        self.mlp = self.mlp.fuse(self.ls2.gamma)
        self.ls2 = nn.Identity()


class Flatten(nn.Module):
    """(B, C, H, W) maps → (B, H·W, C) tokens, row-major (the Flat module of timm and the official code)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).transpose(1, 2)


class Attention(_BiasedAttentionBase):
    """qkv Linear (per head: q D, k D, v Dv), biased attention with LeViT's |dy|·R+|dx| table, no activation,
    proj Linear. q, k, v are strided views of the qkv output, as (B, H, N, ·)."""

    def __init__(self, channels: int, spec: EfficientFormerSpec, resolution: Grid):
        super().__init__(spec.heads, spec.key_dim, spec.value_dim, resolution, 1)
        self.qkv = nn.Linear(channels, spec.heads * (2 * spec.key_dim + spec.value_dim))
        self.proj = nn.Linear(spec.heads * spec.value_dim, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        d = self.key_dim
        qkv = self.qkv(x).view(b, n, self.heads, 2 * d + self.value_dim).permute(0, 2, 1, 3)
        q, k, v = qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:]
        out = reference.biased_attention(q, k, v, self.attention_biases, self.resolution, self.stride, self.scale,
                                         None, gathered_bias=self.gathered_bias())
        return self.proj(out)


class LinearMLP(nn.Module):
    """Linear (C → hidden), GELU, Linear (hidden → C) on tokens: the ``mlp`` reference without its residual."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reference.mlp(x, self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias, ACTIVATION,
                             residual=False)


def _layer_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return reference.layer_norm(x, norm.weight, norm.bias, norm.eps)


class Meta3D(nn.Module):
    """Pre-LN transformer block on (B, N, C) tokens: ``x + ls1·Attention(LN(x))``, ``x + ls2·MLP(LN(x))``."""

    def __init__(self, channels: int, spec: EfficientFormerSpec, resolution: Grid):
        super().__init__()
        self.channels = channels
        self.norm1 = nn.LayerNorm(channels)  # eps 1e-5 in both timm and the official code
        self.token_mixer = Attention(channels, spec, resolution)
        self.ls1: nn.Module = LayerScale(channels, spec.layer_scale_init, channels_first=False)
        self.norm2 = nn.LayerNorm(channels)
        self.mlp = LinearMLP(channels, spec.mlp_ratio * channels)
        self.ls2: nn.Module = LayerScale(channels, spec.layer_scale_init, channels_first=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.token_mixer(_layer_norm(self.norm1, x)))
        return x + self.ls2(self.mlp(_layer_norm(self.norm2, x)))

    @torch.no_grad()
    def fuse(self) -> None:
        """ls1 into the attention's proj, ls2 into the MLP's fc2 (both are the last Linear of their branch)."""
        for layer, scale in ((self.token_mixer.proj, self.ls1), (self.mlp.fc2, self.ls2)):
            weight, bias = _scale_rows(layer.weight, layer.bias, scale.gamma)
            layer.weight.copy_(weight)
            layer.bias.copy_(bias)
        self.ls1, self.ls2 = nn.Identity(), nn.Identity()


class Stage(nn.Module):
    """Optional downsampling ConvBN, then the stage's blocks (Meta4D; in the last stage Flatten and Meta3D after)."""

    def __init__(self, in_channels: int, channels: int, depth: int, attention_blocks: int, side: Grid,
                 spec: EfficientFormerSpec, downsample: bool):
        super().__init__()
        self.downsample = ConvBN(in_channels, channels, 3, 2, 1, bias=True) if downsample else nn.Identity()
        blocks: list[nn.Module] = [Meta4D(channels, spec) for _ in range(depth - attention_blocks)]
        if attention_blocks:
            blocks += [Flatten()] + [Meta3D(channels, spec, side) for _ in range(attention_blocks)]
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


def _init_linear(module: nn.Module) -> None:
    """Every Linear as timm and the official code initialise them: truncated normal σ 0.02, zero bias."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)


class EfficientFormer(nn.Module):
    """An EfficientFormer (v1) variant. Eval returns the mean of the classifier and distillation heads' logits;
    training returns ``(cls, dist)`` (one tensor without distillation). :meth:`fuse` folds BN and LayerScale."""

    def __init__(self, spec: Union[str, EfficientFormerSpec], num_classes: int = 1000, distillation: bool = True,
                 img_size: Grid = 224):
        super().__init__()
        self.spec = spec = get_spec(spec)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        img_size = image_grid(img_size)
        self.num_classes, self.distillation, self.img_size = num_classes, bool(distillation), img_size
        self.fused = False
        self.sides = stage_sides(img_size)
        self.stem = Stem(spec.widths[0])
        last = len(spec.widths) - 1
        self.stages = nn.Sequential(*[
            Stage(spec.widths[max(i - 1, 0)], width, depth, spec.attention_blocks if i == last else 0,
                  self.sides[i], spec, downsample=i > 0)
            for i, (width, depth) in enumerate(zip(spec.widths, spec.depths))])
        width = spec.widths[-1]
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes)
        self.head_dist = nn.Linear(width, num_classes) if distillation else None
        self.apply(_init_linear)

    @property
    def name(self) -> str:
        return self.spec.name

    def forward_features(self, x: torch.Tensor, stages=None):
        """Images (B, 3, H, W) → normalised last-stage tokens (B, N, C). With ``stages`` (increasing stage indices,
        e.g. ``(0, 1, 2, 3)``): the list of those stages' outputs as maps (B, C_s, H_s, W_s) instead, the last one
        before the final norm (as timm's ``forward_intermediates``) — the model as a detection/segmentation
        backbone."""
        self._check_input(x)
        x = self.stem(x)
        if stages is None:
            return _layer_norm(self.norm, self.stages(x))
        wanted = check_stages(self.name, stages, len(self.stages))
        maps = []
        for i, stage in enumerate(self.stages[:wanted[-1] + 1]):
            x = stage(x)
            if i in wanted:
                maps.append(x if x.dim() == 4 else tokens_to_map(x, self.sides[i]))
        return maps

    @property
    def stage_grids(self) -> tuple[Grid, ...]:
        return self.sides

    # Input check and heads are LeViT's to the letter (they read only name, img_size, head and head_dist): eval
    # averages the two heads' logits, training returns both.
    _check_input = LeViT._check_input
    forward = LeViT.forward

    def train(self, mode: bool = True):
        if mode and self.fused:
            raise RuntimeError(f"{self.name}: a fused model has no BatchNorm left to train; fuse a copy instead")
        return super().train(mode)

    def fuse(self) -> "EfficientFormer":
        """Fold BN and LayerScale in place (see :func:`fuse`); returns self."""
        return fuse(self)


@torch.no_grad()
def fuse(model: EfficientFormer) -> EfficientFormer:
    """Fold every BatchNorm into the conv before it and every foldable LayerScale, in place; leaves the model in
    eval mode and returns it (idempotent).

    - stem and downsampling ConvBN → Conv2d with bias;
    - Meta4D: both MLP BNs and ls2 → :class:`PointwiseMLP` (two Linears); ls1 stays, the pool mixer takes it;
    - Meta3D: ls1 into the attention's proj, ls2 into the MLP's fc2. LayerNorm affines stay (a kernel may fuse
      them into the GEMM after; folding them here would change what ``norm1``/``norm2`` mean).
    """
    if not isinstance(model, EfficientFormer):
        raise TypeError(f"fuse: argument 'model' must be a levit EfficientFormer, got {type(model).__name__}")
    if model.fused:
        return model
    model.eval()
    for block in list(model.modules()):
        if isinstance(block, (Meta4D, Meta3D)):  # first: a Meta4D folds its ls2 into the MLP's BN-folded fc2
            block.fuse()
    fuse_modules(model)  # the stem's and the downsamplings' ConvBN
    model.fused = True
    return model


def randomize_(model: nn.Module, generator: Optional[torch.Generator] = None) -> nn.Module:
    """:func:`levit.model.randomize_` (BatchNorm statistics and affines, attention bias tables), then LayerNorm
    affines and LayerScale gammas too, in place; for any model of any family (timm's and the official ones too:
    gammas are found by name, ``*.gamma`` or ``*layer_scale_*``).

    A fresh EfficientFormer's LayerScales are 1e-5, which makes every block an identity to 5 digits: mapping or
    folding errors in a branch would not show. Gammas are drawn in ±[0.1, 0.5] with random sign, LayerNorm weights
    in [0.5, 1.5] and biases in [−0.2, 0.2], which keep L7's 38 blocks' activations O(1).
    """
    _randomize_batchnorms_and_biases(model, generator)

    def draw(t: torch.Tensor, low: float, high: float) -> torch.Tensor:
        r = torch.rand(t.shape, generator=generator, dtype=torch.float64)
        return (low + (high - low) * r).to(dtype=t.dtype, device=t.device)

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm) and m.elementwise_affine:
                m.weight.copy_(draw(m.weight, 0.5, 1.5))
                if m.bias is not None:
                    m.bias.copy_(draw(m.bias, -0.2, 0.2))
        for name, p in model.named_parameters():
            leaf = name.rpartition(".")[2]
            if leaf == "gamma" or leaf.startswith("layer_scale_"):
                sign = torch.where(draw(p, 0.0, 1.0) < 0.5, -1.0, 1.0).to(p.dtype)
                p.copy_(sign * draw(p, 0.1, 0.5))
    return model


def create_model(name: Union[str, EfficientFormerSpec], num_classes: int = 1000, distillation: bool = True,
                 checkpoint=None, img_size: Grid = 224) -> EfficientFormer:
    """Build EfficientFormer variant ``name`` (:data:`MODEL_NAMES`) for ``img_size`` (an int or (H, W)), optionally
    loading ``checkpoint`` (a path or a state dict in any layout :func:`levit.load_checkpoint` accepts for this
    family). Returned in train mode, as ``nn.Module`` constructors do; call ``.eval()`` for inference. The bias
    tables are Rh×Rw with R = ceil(side / 32): a checkpoint of another size has them resampled on load."""
    model = EfficientFormer(name, num_classes, distillation, img_size)
    return model if checkpoint is None else load_checkpoint(model, checkpoint)


registry.register("efficientformer", MODEL_NAMES, create_model)
