"""T2T-ViT (Yuan et al., ICCV 2021) in plain PyTorch, exact to the official code (yitu-opensource/T2T-ViT).

Nine variants (:data:`SPECS`): ``t2t_vit_7/10/12/14/19/24`` with performer token layers and ``t2t_vit_t_14/19/24``
with transformer token layers. The forward calls the single references of :mod:`levit_kernels.reference`:
``attention`` (softmax attention), ``performer_attention``, ``layer_norm``, ``linear`` (GELU and residuals in its
epilogue); the soft splits are ``nn.Unfold``.

The module tree is the official one, so its ``state_dict()`` has the official keys (see :mod:`levit.checkpoint_t2t`)::

    tokens_to_token: T2TModule
        soft_split0..2            Unfold(7, 4, 2), Unfold(3, 2, 1), Unfold(3, 2, 1): 224 → 56² → 28² → 14² tokens
        attention1, attention2    TokenPerformer (.kqv, .proj, .norm1, .norm2, .mlp.0, .mlp.2, .w)
                                  or TokenTransformer (.norm1, .attn.qkv, .attn.proj, .norm2, .mlp.fc1, .mlp.fc2)
        project                   Linear(64·3·3 → embed_dim)
    cls_token (1, 1, E), pos_embed (1, 1 + (S/16)², E): the frozen sinusoid table (a Parameter, requires_grad=False)
    blocks: ModuleList of Block   .norm1, .attn.qkv (no bias), .attn.proj, .norm2, .mlp.fc1, .mlp.fc2
    norm, head                    LayerNorm and Linear on the cls token

Official quirks kept: the token transformer's scale is ``dim^-0.5`` with dim its INPUT width (147, 576), not the
head dim 64, and its residual is taken on v (the input and output widths differ); the performer's residual is on v
too, its random-feature matrix ``w`` (m = 32, 64) is frozen but stored as a parameter, and it has dropout 0.1 (train
mode only). The backbone's qk scale is an argument: the official constructors use ``head_dim^-0.5`` (our default)
but ``embed_dim^-0.5`` when called with ``pretrained=True`` — pass ``qk_scale="pretrained"`` with the official
ImageNet weights to compute what they were trained and evaluated with.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from levit import registry
from levit.checkpoint import load_checkpoint
from levit.model import check_images
from levit_kernels import reference

ACTIVATION = "gelu"
TOKEN_DIM = 64                 # width of the token layers' outputs
IN_CHANNELS = 3
# (kernel, stride, padding) of the three soft splits; total stride 16
SOFT_SPLITS = ((7, 4, 2), (3, 2, 1), (3, 2, 1))
PERFORMER_KERNEL_RATIO = 0.5   # m = 0.5 · 64 = 32 random features
PERFORMER_EPS = 1e-8           # added to the linear attention's normaliser
PERFORMER_DROPOUT = 0.1        # the official Token_performer's dp1 and dp2 (train mode only)
TOKEN_MLP_RATIO = 1.0
LAYER_NORM_EPS = 1e-5
TOKEN_KINDS = ("performer", "transformer")


@dataclass(frozen=True)
class T2TViTSpec:
    """One variant: token-layer kind, backbone width E, depth, heads and MLP ratio (head dim E / heads = 64)."""

    name: str
    tokens: str
    embed_dim: int
    depth: int
    heads: int
    mlp_ratio: float

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.heads

    @property
    def mlp_hidden(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)


SPECS: dict[str, T2TViTSpec] = {spec.name: spec for spec in (
    T2TViTSpec("t2t_vit_7", "performer", 256, 7, 4, 2.0),
    T2TViTSpec("t2t_vit_10", "performer", 256, 10, 4, 2.0),
    T2TViTSpec("t2t_vit_12", "performer", 256, 12, 4, 2.0),
    T2TViTSpec("t2t_vit_14", "performer", 384, 14, 6, 3.0),
    T2TViTSpec("t2t_vit_19", "performer", 448, 19, 7, 3.0),
    T2TViTSpec("t2t_vit_24", "performer", 512, 24, 8, 3.0),
    T2TViTSpec("t2t_vit_t_14", "transformer", 384, 14, 6, 3.0),
    T2TViTSpec("t2t_vit_t_19", "transformer", 448, 19, 7, 3.0),
    T2TViTSpec("t2t_vit_t_24", "transformer", 512, 24, 8, 3.0),
)}
MODEL_NAMES = tuple(SPECS)


def get_spec(name: Union[str, T2TViTSpec]) -> T2TViTSpec:
    if isinstance(name, T2TViTSpec):
        return name
    try:
        return SPECS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown T2T-ViT variant {name!r}; valid names: {', '.join(MODEL_NAMES)}") from None


def unfold_side(side: int, kernel: int, stride: int, padding: int) -> int:
    return (side + 2 * padding - kernel) // stride + 1


def token_grid_sides(img_size: int) -> tuple[int, int, int]:
    """Grid sides after each soft split: (56, 28, 14) at 224."""
    sides, side = [], img_size
    for split in SOFT_SPLITS:
        side = unfold_side(side, *split)
        sides.append(side)
    return tuple(sides)


def token_layer_widths() -> tuple[int, int]:
    """Input widths of the two token layers: 3·7·7 = 147 and 64·3·3 = 576."""
    return IN_CHANNELS * SOFT_SPLITS[0][0] ** 2, TOKEN_DIM * SOFT_SPLITS[1][0] ** 2


def check_img_size(img_size) -> int:
    """``img_size`` must be an int whose soft splits end on the (S // 16)² grid the official position table has
    (true for every multiple of 16)."""
    if isinstance(img_size, bool) or not isinstance(img_size, int) or img_size < 16:
        raise ValueError(f"img_size must be an int ≥ 16 (image side in pixels), got {img_size!r}")
    if token_grid_sides(img_size)[-1] != img_size // 16:
        raise ValueError(f"img_size must be a multiple of 16 (the soft splits of a {img_size}-pixel image give a "
                         f"{token_grid_sides(img_size)[-1]}² grid, the position table has {img_size // 16}²), "
                         f"got {img_size}")
    return img_size


def sinusoid_table(positions: int, dim: int) -> torch.Tensor:
    """(1, positions, dim) float32: angle p / 10000^(2⌊j/2⌋/dim), sin on even j, cos on odd j (computed in float64
    like the official numpy table, then rounded)."""
    pos = torch.arange(positions, dtype=torch.float64).unsqueeze(1)
    j = torch.arange(dim, dtype=torch.float64)
    angle = pos / torch.pow(10000.0, 2 * torch.div(j, 2, rounding_mode="floor") / dim)
    table = torch.where(j.long() % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.to(torch.float32).unsqueeze(0)


def resolve_qk_scale(spec: T2TViTSpec, qk_scale) -> float:
    """The backbone's qk scale: None → head_dim^-0.5 (official default), "pretrained" → embed_dim^-0.5 (what the
    official constructors set with pretrained=True), or a positive float."""
    if qk_scale is None:
        return spec.head_dim ** -0.5
    if qk_scale == "pretrained":
        return spec.embed_dim ** -0.5
    if isinstance(qk_scale, bool) or not isinstance(qk_scale, (int, float)) or not (0 < qk_scale < math.inf):
        raise ValueError(f"qk_scale must be None, 'pretrained' or a positive finite float, got {qk_scale!r}")
    return float(qk_scale)


def _norm(ln: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return reference.layer_norm(x, ln.weight, ln.bias, ln.eps)


def _linear(layer: nn.Linear, x: torch.Tensor, activation=None, residual=None) -> torch.Tensor:
    return reference.linear(x, layer.weight, layer.bias, activation, residual)


class MLP(nn.Module):
    """Linear, GELU, Linear; ``forward(x, residual)`` returns ``residual + mlp(x)``. ``names`` are the two linears'
    keys: ("fc1", "fc2") in the official Mlp, ("0", "2") in the performer's nn.Sequential. ``dropout`` (train mode
    only) applies to the MLP's output, before the residual add, as in the performer."""

    def __init__(self, in_features: int, hidden: int, out_features: int, names=("fc1", "fc2"), dropout: float = 0.0):
        super().__init__()
        self.names, self.dropout = tuple(names), dropout
        self.add_module(self.names[0], nn.Linear(in_features, hidden))
        self.add_module(self.names[1], nn.Linear(hidden, out_features))

    @property
    def linears(self) -> tuple[nn.Linear, nn.Linear]:
        """(first, second) Linear, whatever their key names."""
        return self._modules[self.names[0]], self._modules[self.names[1]]

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        fc1, fc2 = self.linears
        hidden = _linear(fc1, x, ACTIVATION)
        if self.training and self.dropout > 0:
            y = F.dropout(_linear(fc2, hidden), self.dropout, True)
            return y if residual is None else residual + y
        return _linear(fc2, hidden, residual=residual)


class Attention(nn.Module):
    """The backbone's multi-head softmax attention: qkv Linear (no bias), ``attention(q, k, v, scale)``, proj."""

    def __init__(self, dim: int, heads: int, scale: float):
        super().__init__()
        self.heads, self.head_dim, self.scale = heads, dim // heads, scale
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = _linear(self.qkv, x).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = reference.attention(qkv[0], qkv[1], qkv[2], scale=self.scale)
        return _linear(self.proj, out, residual=residual)


class Block(nn.Module):
    """Pre-LN ViT block: ``x + attn(LN(x))``, then ``x + mlp(LN(x))``."""

    def __init__(self, dim: int, heads: int, mlp_hidden: int, scale: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, heads, scale)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = MLP(dim, mlp_hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn(_norm(self.norm1, x), residual=x)
        return self.mlp(_norm(self.norm2, x), residual=x)


class TokenAttention(nn.Module):
    """The token transformer's one-head attention, dim → 64: ``v + proj(softmax(q·kᵀ·dim^-0.5)·v)`` (official
    ``token_transformer.Attention``; its scale uses the input width ``dim``, and the residual is v)."""

    def __init__(self, dim: int, out_dim: int = TOKEN_DIM):
        super().__init__()
        self.out_dim, self.scale = out_dim, dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * out_dim, bias=False)
        self.proj = nn.Linear(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = _linear(self.qkv, x).view(b, n, 3, 1, self.out_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        out = reference.attention(q, k, v, scale=self.scale)
        return _linear(self.proj, out, residual=v[:, 0])


class TokenTransformer(nn.Module):
    """Transformer token layer (``_t`` variants): ``x = attn(LN(x))`` (v residual), then ``x + mlp(LN(x))`` with
    MLP 64 → 64 → 64."""

    def __init__(self, dim: int, out_dim: int = TOKEN_DIM):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = TokenAttention(dim, out_dim)
        self.norm2 = nn.LayerNorm(out_dim, eps=LAYER_NORM_EPS)
        self.mlp = MLP(out_dim, int(out_dim * TOKEN_MLP_RATIO), out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn(_norm(self.norm1, x))
        return self.mlp(_norm(self.norm2, x), residual=x)


class TokenPerformer(nn.Module):
    """Performer token layer (default variants), dim → 64: kqv Linear (with bias) split as k, q, v;
    ``x = v + proj(performer_attention(q, k, v, w))``; then ``x + mlp(LN(x))``. ``w`` (m, 64) is the frozen
    random-feature matrix: orthogonal rows scaled by √m, drawn at construction, kept in the state dict."""

    def __init__(self, dim: int, out_dim: int = TOKEN_DIM):
        super().__init__()
        self.out_dim = out_dim
        self.features = int(out_dim * PERFORMER_KERNEL_RATIO)
        self.eps, self.dropout = PERFORMER_EPS, PERFORMER_DROPOUT
        self.kqv = nn.Linear(dim, 3 * out_dim)
        self.proj = nn.Linear(out_dim, out_dim)
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.norm2 = nn.LayerNorm(out_dim, eps=LAYER_NORM_EPS)
        self.mlp = MLP(out_dim, out_dim, out_dim, names=("0", "2"), dropout=PERFORMER_DROPOUT)
        w = nn.init.orthogonal_(torch.empty(self.features, out_dim)) * math.sqrt(self.features)
        self.w = nn.Parameter(w, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, q, v = torch.split(_linear(self.kqv, _norm(self.norm1, x)), self.out_dim, dim=-1)
        # The reference computes in ≥ fp32 like the official code; back to the model's dtype so fp16/bf16 models run
        # without autocast (the official one needs it).
        y = reference.performer_attention(q, k, v, self.w, self.eps).to(v.dtype)
        if self.training and self.dropout > 0:
            x = v + F.dropout(_linear(self.proj, y), self.dropout, True)
        else:
            x = _linear(self.proj, y, residual=v)
        return self.mlp(_norm(self.norm2, x), residual=x)


TOKEN_LAYERS = {"performer": TokenPerformer, "transformer": TokenTransformer}


class T2TModule(nn.Module):
    """Images (B, 3, S, S) → (B, (S/16)², E): soft split, token layer, re-structure, soft split, token layer,
    re-structure, soft split, project."""

    def __init__(self, tokens: str, embed_dim: int):
        super().__init__()
        for i, (kernel, stride, padding) in enumerate(SOFT_SPLITS):
            self.add_module(f"soft_split{i}", nn.Unfold(kernel, stride=stride, padding=padding))
        layer = TOKEN_LAYERS[tokens]
        width1, width2 = token_layer_widths()
        self.attention1 = layer(width1)
        self.attention2 = layer(width2)
        self.project = nn.Linear(width2, embed_dim)

    @staticmethod
    def _restructure(x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) tokens → (B, C, √N, √N) image."""
        b, n, c = x.shape
        side = math.isqrt(n)
        return x.transpose(1, 2).reshape(b, c, side, side)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attention1(self.soft_split0(x).transpose(1, 2))
        x = self.attention2(self.soft_split1(self._restructure(x)).transpose(1, 2))
        return _linear(self.project, self.soft_split2(self._restructure(x)).transpose(1, 2))


class T2TViT(nn.Module):
    """A T2T-ViT variant; returns the logits of the classifier on the final-normed cls token."""

    def __init__(self, spec: Union[str, T2TViTSpec], num_classes: int = 1000, img_size: int = 224,
                 qk_scale: Union[None, str, float] = None):
        super().__init__()
        self.spec = get_spec(spec)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.num_classes, self.img_size = num_classes, check_img_size(img_size)
        self.qk_scale = resolve_qk_scale(self.spec, qk_scale)
        e = self.spec.embed_dim
        self.tokens_to_token = T2TModule(self.spec.tokens, e)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, e))
        self.pos_embed = nn.Parameter(sinusoid_table((img_size // 16) ** 2 + 1, e), requires_grad=False)
        self.blocks = nn.ModuleList([Block(e, self.spec.heads, self.spec.mlp_hidden, self.qk_scale)
                                     for _ in range(self.spec.depth)])
        self.norm = nn.LayerNorm(e, eps=LAYER_NORM_EPS)
        self.head = nn.Linear(e, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """As the official model: trunc-normal(0.02) Linear weights and cls token, zero biases, unit LayerNorms."""
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @property
    def name(self) -> str:
        return self.spec.name

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, S, S) → the backbone's output tokens (B, 1 + (S/16)², E), before the final norm."""
        check_images(self.name, x, self.img_size, IN_CHANNELS)
        x = self.tokens_to_token(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images → the normed cls token (B, E), as the official ``forward_features``."""
        return _norm(self.norm, self.forward_tokens(x)[:, 0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _linear(self.head, self.forward_features(x))


def randomize_(model: nn.Module, generator: Optional[torch.Generator] = None) -> nn.Module:
    """Give an untrained T2T-ViT random LayerNorm affines, Linear biases and cls token, in place; returns it.

    A fresh model has unit/zero LayerNorms and zero biases, under which a norm or bias wired to the wrong op (in a
    fused model, a checkpoint mapping) would go unnoticed; tests and comparisons call this first. Weights keep their
    init, the frozen pos_embed and w are left alone. Matched by module type, so any pre-LN ViT works too.
    """
    def perturb(t: torch.Tensor, base: float) -> None:
        noise = torch.randn(t.shape, generator=generator, dtype=torch.float64)
        t.copy_((base + 0.2 * noise).to(dtype=t.dtype, device=t.device))

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm) and m.weight is not None:
                perturb(m.weight, 1.0)
            if isinstance(m, (nn.LayerNorm, nn.Linear)) and m.bias is not None:
                perturb(m.bias, 0.0)
        cls_token = getattr(model, "cls_token", None)
        if isinstance(cls_token, torch.Tensor):
            perturb(cls_token, 0.0)
    return model


def create_model(name: Union[str, T2TViTSpec], num_classes: int = 1000, checkpoint=None, img_size: int = 224,
                 qk_scale: Union[None, str, float] = None) -> T2TViT:
    """Build T2T-ViT variant ``name`` (see :data:`MODEL_NAMES`), optionally loading ``checkpoint`` (a path or state
    dict in the official layout, see :mod:`levit.checkpoint_t2t`). ``qk_scale``: see :func:`resolve_qk_scale`
    (use "pretrained" with the official ImageNet weights). Returned in train mode; call ``.eval()``."""
    model = T2TViT(name, num_classes, img_size, qk_scale)
    return model if checkpoint is None else load_checkpoint(model, checkpoint)


registry.register("t2t_vit", MODEL_NAMES, create_model)
