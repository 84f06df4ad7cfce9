"""Paper-exact LeViT in plain PyTorch, token-major (B, N, C) like the official code.

The model is built from the block list of :func:`levit.config.op_shapes`; every attention calls
:func:`levit_kernels.reference.biased_attention`, the single definition of LeViT's biased attention. Each block
module keeps its ``shape`` (the config dataclass) so later passes (fusion, kernel swaps) can rebuild it.

Module tree of ``LeViT`` (what the checkpoint layouts map onto, see :mod:`levit.checkpoint`)::

    stem: Stem                   conv1..conv4 (levit.layers.ConvBN: .conv, .bn), Hardswish between (act1..act3)
    blocks: Sequential           in op_shapes order:
        Residual(Attention)      .body: .qkv, .proj (LinearBN: .linear, .bn), .attention_biases (H, Rh·Rw)
        Residual(MLP)            .body: .fc1, .fc2 (LinearBN)
        ShrinkAttention          .kv, .q, .proj (LinearBN), .attention_biases (H, Rh·Rw); no residual
    head, head_dist: ClassifierHead   .bn (BatchNorm1d), .linear (head_dist is None without distillation)

Any input size: ``img_size`` is an int S or a pair (H, W); every grid follows the stem's arithmetic (each 3×3
stride-2 conv halves a side, rounding up) and is stored as an int when square, (Rh, Rw) otherwise. A checkpoint of
another size is resampled on load (:mod:`levit.checkpoint`).
"""
from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from levit.config import (AttentionShape, BlockShape, ConvShape, Grid, LeViTSpec, MLPShape, ShrinkAttentionShape,
                          get_spec, head_shape, image_grid, op_shapes, stem_shapes)
from levit.layers import BNLinear, ConvBN, LinearBN, fuse_modules
from levit_kernels import reference

ACTIVATION = "hardswish"


class Stem(nn.Sequential):
    """Four ConvBN (3 → C/8 → C/4 → C/2 → C), Hardswish between them, none after the last."""

    def __init__(self, shapes: list[ConvShape]):
        super().__init__()
        for i, shape in enumerate(shapes, start=1):
            if i > 1:
                self.add_module(f"act{i - 1}", nn.Hardswish())
            self.add_module(f"conv{i}", ConvBN(shape.in_channels, shape.out_channels, shape.kernel, shape.stride,
                                               shape.padding))


class _BiasedAttentionBase(nn.Module):
    """Holds the (H, Rh·Rw) bias table and its eval-time gathered (H, Nq, Nk) form.

    The gathered bias is cached only when no gradient can flow to the table (eval mode, and grad disabled or the
    table frozen); the cache is dropped on ``train()``/``eval()``, ``load_state_dict`` and every ``_apply``
    (``.to``, ``.half()``, ``.cuda()``, ...), and is also keyed by the table's storage, version counter, dtype
    and device, so an in-place edit of ``attention_biases`` cannot leave it stale either.
    """

    def __init__(self, heads: int, key_dim: int, value_dim: int, resolution: Grid, stride: int):
        super().__init__()
        self.heads, self.key_dim, self.value_dim = heads, key_dim, value_dim
        self.resolution, self.stride = resolution, stride
        self.scale = key_dim ** -0.5
        self.attention_biases = nn.Parameter(torch.zeros(heads, reference.grid_points(resolution)))
        self._bias_cache: Optional[tuple[tuple, torch.Tensor]] = None

    def _table_key(self) -> tuple:
        table = self.attention_biases
        try:
            version = table._version
        except RuntimeError:  # inference tensors keep no version counter
            version = None
        return table.data_ptr(), version, table.dtype, table.device

    def gathered_bias(self) -> Optional[torch.Tensor]:
        """The cached (H, Nq, Nk) bias in eval, or None (the attention then gathers it from the live table).

        Under torch.compile the gather is left in the graph (the cache's storage/version key cannot be traced).
        """
        if (self.training or torch.compiler.is_compiling()
                or (torch.is_grad_enabled() and self.attention_biases.requires_grad)):
            return None
        key = self._table_key()
        if self._bias_cache is None or self._bias_cache[0] != key:
            with torch.no_grad():
                gathered = reference.gather_attention_bias(self.attention_biases, self.resolution, self.stride)
            self._bias_cache = (key, gathered)
        return self._bias_cache[1]

    def invalidate_bias_cache(self) -> None:
        self._bias_cache = None

    def train(self, mode: bool = True):
        self.invalidate_bias_cache()
        return super().train(mode)

    def _apply(self, fn, *args, **kwargs):
        self.invalidate_bias_cache()
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, *args, **kwargs):
        self.invalidate_bias_cache()
        return super()._load_from_state_dict(*args, **kwargs)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return reference.biased_attention(q, k, v, self.attention_biases, self.resolution, self.stride, self.scale,
                                          ACTIVATION, gathered_bias=self.gathered_bias())


class Attention(_BiasedAttentionBase):
    """Stage attention: qkv LinearBN (per head: q D, k D, v Dv), biased attention, Hardswish, proj LinearBN.

    q, k and v are strided views of the qkv output (no copies), as (B, H, N, ·).
    """

    def __init__(self, shape: AttentionShape):
        super().__init__(shape.heads, shape.key_dim, shape.value_dim, shape.resolution, shape.stride)
        self.shape = shape
        qkv_in, qkv_out = shape.linears["qkv"]
        proj_in, proj_out = shape.linears["proj"]
        self.qkv = LinearBN(qkv_in, qkv_out)
        self.proj = LinearBN(proj_in, proj_out, bn_weight_init=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        d = self.key_dim
        qkv = self.qkv(x).view(b, n, self.heads, 2 * d + self.value_dim).permute(0, 2, 1, 3)
        q, k, v = qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:]
        return self.proj(self._attend(q, k, v))


class ShrinkAttention(_BiasedAttentionBase):
    """Shrink attention between stages: k, v from all R² tokens (kv LinearBN, per head: k D, v Dv), q from the
    stride-2 subsampled tokens (q LinearBN), biased attention, Hardswish, proj LinearBN to the new width."""

    def __init__(self, shape: ShrinkAttentionShape):
        super().__init__(shape.heads, shape.key_dim, shape.value_dim, shape.resolution, shape.stride)
        self.shape = shape
        self.kv = LinearBN(*shape.linears["kv"])
        self.q = LinearBN(*shape.linears["q"])
        self.proj = LinearBN(*shape.linears["proj"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        d = self.key_dim
        kv = self.kv(x).view(b, n, self.heads, d + self.value_dim).permute(0, 2, 1, 3)
        k, v = kv[..., :d], kv[..., d:]
        q = self.q(reference.subsample_tokens(x, self.resolution, self.stride))
        q = q.view(b, -1, self.heads, d).permute(0, 2, 1, 3)
        return self.proj(self._attend(q, k, v))


class MLP(nn.Module):
    """fc1 LinearBN (C → 2C), Hardswish, fc2 LinearBN (2C → C); the residual add is the enclosing Residual's."""

    def __init__(self, shape: MLPShape):
        super().__init__()
        self.shape = shape
        self.fc1 = LinearBN(*shape.linears["fc1"])
        self.fc2 = LinearBN(*shape.linears["fc2"], bn_weight_init=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.hardswish(self.fc1(x)))


class Residual(nn.Module):
    """``x + body(x)``; in training each sample's branch is dropped with probability ``drop_path``."""

    def __init__(self, body: nn.Module, drop_path: float = 0.0):
        super().__init__()
        self.body = body
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.body(x)
        if self.training and self.drop_path > 0:
            keep = torch.rand(x.shape[0], 1, 1, device=x.device) >= self.drop_path
            branch = branch * keep.to(branch.dtype) / (1 - self.drop_path)
        return x + branch


class ClassifierHead(BNLinear):
    """BatchNorm1d then Linear, on the token-mean features (B, C)."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__(channels, num_classes)
        nn.init.trunc_normal_(self.linear.weight, std=0.02)
        nn.init.zeros_(self.linear.bias)


def build_block(shape: BlockShape, drop_path: float = 0.0) -> nn.Module:
    """The module for one entry of :func:`levit.config.op_shapes`."""
    if isinstance(shape, AttentionShape):
        return Residual(Attention(shape), drop_path)
    if isinstance(shape, MLPShape):
        return Residual(MLP(shape), drop_path)
    if isinstance(shape, ShrinkAttentionShape):
        return ShrinkAttention(shape)
    raise TypeError(f"build_block: unknown block shape {type(shape).__name__}")


def check_images(model_name: str, x, img_size: Grid, channels: int = 3) -> None:
    """A model's input must be a (B, channels, H, W) tensor of its img_size; the error names the model and the
    shapes."""
    expected = (channels, *reference.grid_sides(img_size))
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != expected:
        got = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{model_name}: input must be images of shape (B, {', '.join(map(str, expected))}), "
                         f"got {got}")


def check_stages(model_name: str, stages, count: int) -> tuple[int, ...]:
    """``stages`` of forward_features: stage indices in [0, count), increasing; the error names the model."""
    ok = isinstance(stages, (tuple, list, range)) and len(stages) > 0 and all(
        isinstance(s, int) and not isinstance(s, bool) and 0 <= s < count for s in stages) and list(
        stages) == sorted(set(stages))
    if not ok:
        raise ValueError(f"{model_name}: stages must be increasing stage indices in [0, {count}), got {stages!r}")
    return tuple(stages)


def tokens_to_map(x: torch.Tensor, grid: Grid) -> torch.Tensor:
    """(B, H·W, C) row-major tokens → the (B, C, H, W) map."""
    h, w = reference.grid_sides(grid)
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], h, w)


class LeViT(nn.Module):
    """A LeViT variant. Eval returns the mean of the classifier and distillation heads' logits; training returns
    ``(cls, dist)`` (one tensor without distillation). :meth:`fuse` folds every BatchNorm for inference."""

    def __init__(self, spec: Union[str, LeViTSpec], num_classes: int = 1000, distillation: bool = True,
                 img_size: Grid = 224):
        super().__init__()
        self.spec = get_spec(spec)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        img_size = image_grid(img_size)
        self.num_classes, self.distillation, self.img_size = num_classes, bool(distillation), img_size
        self.fused = False
        self.stem = Stem(stem_shapes(self.spec, img_size))
        self.block_shapes = op_shapes(self.spec, img_size)
        self.blocks = nn.Sequential(*[build_block(s, self.spec.drop_path) for s in self.block_shapes])
        # Token grid of each stage (an MLP of every stage runs on it, after the shrink that leads in).
        self.stage_grids = tuple(next(b.resolution for b in self.block_shapes if isinstance(b, MLPShape)
                                      and b.stage == s) for s in range(self.spec.stages))
        head = head_shape(self.spec, num_classes, distillation)
        self.head = ClassifierHead(head.channels, num_classes)
        self.head_dist = ClassifierHead(head.channels, num_classes) if distillation else None

    @property
    def name(self) -> str:
        return self.spec.name

    def _check_input(self, x) -> None:
        check_images(self.name, x, self.img_size)

    def forward_features(self, x: torch.Tensor, stages=None):
        """Images (B, 3, H, W) → last-stage tokens (B, N, C). With ``stages`` (increasing stage indices, e.g.
        ``(0, 1, 2)``): the list of those stages' outputs as maps (B, C_s, H_s, W_s) instead — the model as a
        detection/segmentation backbone (a stage's output: its last block's, before the next shrink)."""
        self._check_input(x)
        x = self.stem(x).flatten(2).transpose(1, 2)
        if stages is None:
            return self.blocks(x)
        wanted = check_stages(self.name, stages, len(self.stage_grids))
        maps, shapes = [], self.block_shapes
        for i, block in enumerate(self.blocks):
            x = block(x)
            stage = shapes[i].stage
            if (i + 1 == len(shapes) or shapes[i + 1].stage != stage) and stage in wanted:
                maps.append(tokens_to_map(x, self.stage_grids[stage]))
                if stage == wanted[-1]:
                    break
        return maps

    def forward(self, x: torch.Tensor):
        features = self.forward_features(x).mean(dim=1)
        logits = self.head(features)
        if self.head_dist is None:
            return logits
        logits_dist = self.head_dist(features)
        if self.training:
            return logits, logits_dist
        return (logits + logits_dist) / 2

    def train(self, mode: bool = True):
        if mode and self.fused:
            raise RuntimeError(f"{self.name}: a fused model has no BatchNorm left to train; fuse a copy instead")
        return super().train(mode)

    @torch.no_grad()
    def fuse(self) -> "LeViT":
        """Fold every BatchNorm into its Conv/Linear, in place, leave the model in eval mode and return it
        (idempotent). A fused model cannot be put back in training mode or load checkpoints: fuse a copy to keep
        a trainable one. The attention modules stay: they call the same reference attention with their (now
        Linear) projections."""
        if not self.fused:
            self.eval()
            fuse_modules(self)
            self.fused = True
        return self


def randomize_(model: nn.Module, generator: Optional[torch.Generator] = None) -> nn.Module:
    """Give an untrained model non-trivial BatchNorm statistics and affines and attention biases, in place.

    A fresh LeViT has identity BatchNorms, zero-initialised residual-branch BN weights and zero attention biases,
    under which BN folding, bias caching and checkpoint mapping errors could go unnoticed; tests, the demo and
    benchmarks call this first. Scales keep activations O(1) through all blocks.
    """
    def draw(t: torch.Tensor, low: float, high: float) -> torch.Tensor:
        r = torch.rand(t.shape, generator=generator, dtype=torch.float64)
        return (low + (high - low) * r).to(dtype=t.dtype, device=t.device)

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(draw(m.running_mean, -0.2, 0.2))
                m.running_var.copy_(draw(m.running_var, 0.5, 1.5))
                m.weight.copy_(draw(m.weight, 0.5, 1.5))
                m.bias.copy_(draw(m.bias, -0.2, 0.2))
        for name, p in model.named_parameters():  # by name, so timm's and the official models work too
            if name.endswith("attention_biases"):
                p.copy_(draw(p, -4.0, 4.0))
    return model


def create_model(name: Union[str, LeViTSpec], num_classes: int = 1000, distillation: bool = True,
                 checkpoint=None, img_size: Grid = 224) -> LeViT:
    """Build LeViT variant ``name`` (see :data:`levit.config.MODEL_NAMES`) for ``img_size`` (an int or (H, W)),
    optionally loading ``checkpoint`` (a path or state dict in any layout :func:`levit.checkpoint.load_checkpoint`
    accepts; a checkpoint of another size has its bias tables resampled). Returned in train mode, as ``nn.Module``
    constructors do; call ``.eval()`` for inference."""
    model = LeViT(name, num_classes, distillation, img_size)
    if checkpoint is not None:
        from levit.checkpoint import load_checkpoint

        load_checkpoint(model, checkpoint)
    return model


def _register() -> None:
    from levit import registry
    from levit.config import MODEL_NAMES

    registry.register("levit", MODEL_NAMES, create_model)


_register()
