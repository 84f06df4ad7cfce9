"""The optimized model: every block is a chain of levit_kernels ops on weights prepared once, built from the block
specs of :mod:`levit_kernels.optimize.specs` (this module knows no family):

- attention: [``layer_norm``] → ``linear(qkv)`` → ``biased_attention`` (q, k, v are strided views of the packed
  qkv output, the spec's activation fused) → ``linear(proj, residual=x)``;
- shrink: ``linear(kv)`` → ``shrink_attention`` (query projection of the stride-s tokens inside) → ``linear(proj)``;
- MLP: the ``mlp`` op with the residual fused; after a LayerNorm, ``layer_norm`` → ``linear(fc1, activation)`` →
  ``linear(fc2, residual=x)`` (the ``mlp`` op's residual is its own input, here the normalised tokens);
- pool: ``pool_mixer`` on the tokens viewed as a channels-last map;
- conv: a PyTorch convolution on the tokens viewed as a channels-last map (:mod:`levit_kernels.optimize.stem`);
- ViT-style blocks (T2T-ViT, vit-pytorch): unfold (a soft split as one gather), softmax attention ([``layer_norm``]
  → ``linear(qkv)`` → ``attention`` → ``linear(proj, residual=x or v)``), the performer token layer, a LayerNorm
  with affine, a [LayerNorm'd] ``linear``, class tokens + positions;
- head: [``layer_norm``] → token mean (or the class token) → one ``linear`` (the eval heads merged).

The ops are bound once (:meth:`OptimizedLeViT.bind`, a :class:`Runtime`): the public ops of
:mod:`levit_kernels.ops` (validation) for the check pass at optimize time, then the backend's functions directly,
so a forward does no per-call argument validation, weight preparation or backend lookup. A backend that packs
weights itself (``pack_weight``, ``linear_packed``, ``mlp_packed``: the cpu backend) gets its projections packed
once by :meth:`OptimizedLeViT.pack` (the unpacked copies are dropped). Weights are buffers, also held in plain
tuples that the forward reads.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import torch
import torch.nn as nn

from levit_kernels.optimize.specs import (AttentionSpec, ClassTokenSpec, ConvSpec, HeadSpec, LayerNormSpec, LinearSpec,
                                          MLPSpec, ModelDescription, PerformerSpec, PoolSpec, Projection, ShrinkSpec,
                                          SoftmaxAttentionSpec, UnfoldSpec, grid_text)
from levit_kernels.optimize.stem import ConvLayers, FusedStem, to_tokens
from levit_kernels.reference import grid, grid_points, grid_sides, query_grid


class Runtime(NamedTuple):
    """The op functions the blocks call, positionally: ``linear(x, *weight_args, activation, residual)`` and
    ``mlp(x, w1, b1, w2, b2, activation, residual)`` where weight args are (weight, bias) — or, with ``packed``,
    (packed weight, out features, bias) and packed w1/w2 — and the others as the public ops
    (``layer_norm(x, weight, bias, eps)``, ``pool_mixer(x, layer_scale, pool_size)``; None where the backend has
    no such op)."""

    linear: Callable
    mlp: Callable
    biased_attention: Callable
    shrink_attention: Callable
    layer_norm: Optional[Callable] = None
    pool_mixer: Optional[Callable] = None
    attention: Optional[Callable] = None
    packed: bool = False


OPS = Runtime._fields[:-1]  # every op name


def runtime(backend_module) -> Runtime:
    """The functions of a backend module, its packed ones when it has them."""
    m = backend_module
    extra = dict(layer_norm=getattr(m, "layer_norm", None), pool_mixer=getattr(m, "pool_mixer", None),
                 attention=getattr(m, "attention", None))
    if hasattr(m, "pack_weight"):
        return Runtime(m.linear_packed, m.mlp_packed, m.biased_attention, m.shrink_attention, **extra, packed=True)
    return Runtime(m.linear, m.mlp, m.biased_attention, m.shrink_attention, **extra)


class _Prepared(nn.Module):
    """Holds weights prepared in the target dtype/device, contiguous, as buffers.

    ``packable``: the projections run through ``linear``/``mlp`` (their weights may be packed by the backend).
    """

    kind = ""
    packable: tuple[str, ...] = ()

    def __init__(self, where: str, dtype: torch.dtype, device: torch.device, **tensors: torch.Tensor):
        super().__init__()
        self.where = where
        for name, value in tensors.items():
            self.register_buffer(name, value.to(device=device, dtype=dtype).contiguous())
        self._packed = False
        self._set_arguments()

    @staticmethod
    def projection(prefix: str, p: Projection) -> dict[str, torch.Tensor]:
        return {f"{prefix}_weight": p.weight, f"{prefix}_bias": p.bias}

    def pack(self, pack_weight: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Replace each packable weight ``<name>_weight`` by the buffer ``<name>_weight_packed``."""
        for name in self.packable:
            weight = getattr(self, f"{name}_weight")
            delattr(self, f"{name}_weight")
            self.register_buffer(f"{name}_weight_packed", pack_weight(weight))
        self._packed = True
        self._set_arguments()

    def _weight(self, name: str) -> torch.Tensor:
        return getattr(self, f"{name}_weight_packed" if self._packed else f"{name}_weight")

    def _linear_arguments(self, name: str) -> tuple:
        bias = getattr(self, f"{name}_bias")
        return (self._weight(name), bias.shape[0], bias) if self._packed else (self._weight(name), bias)

    def _set_arguments(self) -> None:
        """Cache the tensors the forward passes in plain attributes (no nn.Module lookups per call)."""

    def bind(self, ops: Runtime) -> None:
        if ops.packed != self._packed:
            raise RuntimeError(f"{self.where}: the weights are {'' if self._packed else 'not '}packed but the ops "
                               f"take them {'packed' if ops.packed else 'unpacked'}")
        self._ops = ops

    def extra_repr(self) -> str:
        return self.where


def head_views(heads: int, tokens: int, dims: tuple[int, ...]) -> tuple[tuple, ...]:
    """(size without batch, strides, offset) of each per-head segment of contiguous (B, tokens, heads·sum(dims))
    projection outputs, viewed as (B, heads, tokens, dim): q, k, v read in place, one as_strided call each (a
    view + transpose + split costs about twice as much host time per block)."""
    per_head = sum(dims)
    strides = (tokens * heads * per_head, per_head, heads * per_head, 1)
    offsets = [sum(dims[:i]) for i in range(len(dims))]
    return tuple(((heads, tokens, d), strides, offset) for d, offset in zip(dims, offsets))


class FusedAttention(_Prepared):
    kind = "attention"
    packable = ("qkv", "proj")

    def __init__(self, spec: AttentionSpec, dtype, device):
        self.heads, self.resolution, self.scale = spec.heads, spec.resolution, spec.scale
        self.activation, self.norm_eps = spec.activation, spec.norm_eps
        self._q, self._k, self._v = head_views(spec.heads, grid_points(spec.resolution),
                                               (spec.key_dim, spec.key_dim, spec.value_dim))
        super().__init__(spec.where, dtype, device, **self.projection("qkv", spec.qkv),
                         attention_biases=spec.attention_biases, **self.projection("proj", spec.proj))

    def _set_arguments(self) -> None:
        self._qkv, self._proj = self._linear_arguments("qkv"), self._linear_arguments("proj")
        self._table = self.attention_biases

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ops, b = self._ops, x.shape[0]
        normed = x if self.norm_eps is None else ops.layer_norm(x, None, None, self.norm_eps)
        qkv = ops.linear(normed, *self._qkv, None, None)  # contiguous, as every backend's outputs
        (q_size, q_strides, q_offset), (k_size, k_strides, k_offset), (v_size, v_strides, v_offset) = \
            self._q, self._k, self._v
        q = qkv.as_strided((b, *q_size), q_strides, q_offset)
        k = qkv.as_strided((b, *k_size), k_strides, k_offset)
        v = qkv.as_strided((b, *v_size), v_strides, v_offset)
        out = ops.biased_attention(q, k, v, self._table, self.resolution, 1, self.scale, self.activation)
        return ops.linear(out, *self._proj, None, x)


class FusedShrink(_Prepared):
    kind = "shrink"
    packable = ("kv", "proj")  # the query projection runs inside shrink_attention, on the weight as it is

    def __init__(self, spec: ShrinkSpec, dtype, device):
        self.heads, self.resolution, self.stride, self.scale = spec.heads, spec.resolution, spec.stride, spec.scale
        self.activation = spec.activation
        self._k, self._v = head_views(spec.heads, grid_points(spec.resolution), (spec.key_dim, spec.value_dim))
        super().__init__(spec.where, dtype, device, **self.projection("kv", spec.kv), **self.projection("q", spec.q),
                         attention_biases=spec.attention_biases, **self.projection("proj", spec.proj))

    def pack(self, pack_weight: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Also store the query projection transposed, (C, H·D) row-major, as a (H·D, C) view: the cpu backend (the
        one that packs) then reads each head's columns in place instead of re-packing them per (batch, head)
        (csrc/attention/attention_impl.h, ``query_weight``)."""
        self.q_weight = self.q_weight.t().contiguous().t()
        super().pack(pack_weight)

    def _set_arguments(self) -> None:
        self._kv, self._proj = self._linear_arguments("kv"), self._linear_arguments("proj")
        self._query = (self.q_weight, self.q_bias)
        self._table = self.attention_biases

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ops, b = self._ops, x.shape[0]
        kv = ops.linear(x, *self._kv, None, None)
        (k_size, k_strides, k_offset), (v_size, v_strides, v_offset) = self._k, self._v
        k = kv.as_strided((b, *k_size), k_strides, k_offset)
        v = kv.as_strided((b, *v_size), v_strides, v_offset)
        out = ops.shrink_attention(x, *self._query, k, v, self._table, self.resolution, self.stride, self.scale,
                                   self.activation)
        return ops.linear(out, *self._proj, None, None)


class FusedMLP(_Prepared):
    kind = "mlp"
    packable = ("fc1", "fc2")

    def __init__(self, spec: MLPSpec, dtype, device):
        self.activation, self.norm_eps = spec.activation, spec.norm_eps
        super().__init__(spec.where, dtype, device, **self.projection("fc1", spec.fc1),
                         **self.projection("fc2", spec.fc2))

    def _set_arguments(self) -> None:
        self._weights = (self._weight("fc1"), self.fc1_bias, self._weight("fc2"), self.fc2_bias)
        self._fc1, self._fc2 = self._linear_arguments("fc1"), self._linear_arguments("fc2")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ops = self._ops
        if self.norm_eps is None:
            return ops.mlp(x, *self._weights, self.activation, True)
        hidden = ops.linear(ops.layer_norm(x, None, None, self.norm_eps), *self._fc1, self.activation, None)
        return ops.linear(hidden, *self._fc2, None, x)


class FusedPool(_Prepared):
    """The pooling token mixer on the (B, N, C) tokens viewed as a (B, H, W, C) map (no copy)."""

    kind = "pool"

    def __init__(self, spec: PoolSpec, dtype, device):
        self.side, self.pool_size = spec.side, spec.pool_size
        self._hw = grid_sides(spec.side)
        super().__init__(spec.where, dtype, device, layer_scale=spec.layer_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        mixed = self._ops.pool_mixer(x.view(b, *self._hw, c), self.layer_scale, self.pool_size)
        return mixed.reshape(b, n, c)


class FusedConv(_Prepared):
    """A convolution between stages: the tokens viewed as a channels-last (B, C, H, W) map (no copy), a
    PyTorch convolution (BN folded), its channels-last output viewed as tokens again."""

    kind = "conv"

    def __init__(self, spec: ConvSpec, dtype, device):
        self.side = spec.side
        self._hw = grid_sides(spec.side)
        super().__init__(spec.where, dtype, device)
        self.conv = ConvLayers([spec.conv], dtype, device, channels_last=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, c = x.shape
        return to_tokens(self.conv(x.view(b, *self._hw, c).permute(0, 3, 1, 2)))


class FusedHead(_Prepared):
    """[LayerNorm without affine] → token mean (or the class token) → the merged classifier (or just the pooled tokens
    when the model has none)."""

    kind = "head"

    def __init__(self, spec: HeadSpec, dtype, device):
        head = spec.classifier
        self.packable = ("head",) if head is not None else ()
        self.norm_eps, self.pool = spec.norm_eps, spec.pool
        super().__init__(head.where if head is not None else spec.pool, dtype, device,
                         **(self.projection("head", head) if head is not None else {}))

    def _set_arguments(self) -> None:
        self._head = self._linear_arguments("head") if self.packable else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool == "cls":  # LayerNorm is per token: normalise the class token only
            x = x[:, :1]
        if self.norm_eps is not None:
            x = self._ops.layer_norm(x, None, None, self.norm_eps)
        features = x[:, 0] if self.pool == "cls" else x.mean(dim=1)
        if self._head is None:
            return features
        return self._ops.linear(features, *self._head, None, None)


# ------------------------------------------------------------------------ ViT-style blocks (T2T-ViT, vit-pytorch)
class FusedUnfold(_Prepared):
    """A soft split of the (B, side², C) tokens: one strided view of the zero-padded channels-last map, gathered by
    one copy into (B, N', C·k²) (no (B, C·k², N') intermediate to transpose, as nn.Unfold gives). Measured against
    nn.Unfold + transpose + contiguous on the shared 2-core EPYC (1 thread, process time, 15 interleaved rounds):
    2.0× faster on T2T-ViT's first split (224², 3 channels, 7/4/2) at batch 16 and 1, 1.1-1.2× on its second
    (56², 64 channels, 3/2/1)."""

    kind = "unfold"

    def __init__(self, spec: UnfoldSpec, dtype, device):
        self.side, self.kernel, self.stride, self.padding = spec.side, spec.kernel, spec.stride, spec.padding
        self.order, self.out_side = spec.order, spec.out_side()
        super().__init__(spec.where, dtype, device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, c = x.shape
        k, s, p, side, out = self.kernel, self.stride, self.padding, self.side, self.out_side
        grid = x.view(b, side, side, c)
        if p:
            grid = torch.nn.functional.pad(grid, (0, 0, p, p, p, p))
        padded = grid.shape[2]
        bs, rs = grid.stride(0), padded * c  # batch and row strides of the (padded, contiguous) map
        # (B, out, out, k, k, C) for "cl" order, (B, out, out, C, k, k) for "cf" (nn.Unfold's channel-major order)
        if self.order == "cl":
            patches = grid.as_strided((b, out, out, k, k, c), (bs, s * rs, s * c, rs, c, 1))
        else:
            patches = grid.as_strided((b, out, out, c, k, k), (bs, s * rs, s * c, 1, rs, c))
        return patches.reshape(b, out * out, c * k * k)


def _qkv_views(heads: int, tokens: int, key_dim: int, value_dim: int) -> tuple[tuple, ...]:
    """(size, strides, offset) of q, k, v (B, heads, tokens, dim) inside a contiguous (B, tokens, qkv) projection
    output laid out [q | k | v], each head-major (vit-pytorch's and the official T2T-ViT's layout); and of v as
    (B, tokens, heads·value_dim) for a v residual."""
    width = heads * (2 * key_dim + value_dim)
    per_batch = tokens * width
    q = ((heads, tokens, key_dim), (per_batch, key_dim, width, 1), 0)
    k = ((heads, tokens, key_dim), (per_batch, key_dim, width, 1), heads * key_dim)
    v = ((heads, tokens, value_dim), (per_batch, value_dim, width, 1), 2 * heads * key_dim)
    v_tokens = ((tokens, heads * value_dim), (per_batch, width, 1), 2 * heads * key_dim)
    return q, k, v, v_tokens


class FusedSoftmaxAttention(_Prepared):
    """[layer_norm] → linear(qkv) → attention (the flash op, q/k/v strided views) → linear(proj, residual)."""

    kind = "softmax"

    def __init__(self, spec: SoftmaxAttentionSpec, dtype, device):
        self.heads, self.scale, self.norm_eps, self.residual = spec.heads, spec.scale, spec.norm_eps, spec.residual
        self.key_dim, self.value_dim = spec.key_dim, spec.value_dim
        self.packable = ("qkv", "proj") if spec.proj is not None else ("qkv",)
        self._views: dict[int, tuple] = {}
        super().__init__(spec.where, dtype, device, **self.projection("qkv", spec.qkv),
                         **(self.projection("proj", spec.proj) if spec.proj is not None else {}))

    def _set_arguments(self) -> None:
        self._qkv = self._linear_arguments("qkv")
        self._proj = self._linear_arguments("proj") if "proj" in self.packable else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ops, (b, n, _) = self._ops, x.shape
        normed = x if self.norm_eps is None else ops.layer_norm(x, None, None, self.norm_eps)
        qkv = ops.linear(normed, *self._qkv, None, None)
        views = self._views.get(n) or self._views.setdefault(
            n, _qkv_views(self.heads, n, self.key_dim, self.value_dim))
        q, k, v, v_tokens = [qkv.as_strided((b, *size), strides, offset) for size, strides, offset in views]
        out = ops.attention(q, k, v, self.scale, None, None)
        residual = x if self.residual == "input" else v_tokens if self.residual == "v" else None
        if self._proj is None:
            return out if residual is None else out + residual
        return ops.linear(out, *self._proj, None, residual)


class FusedPerformer(_Prepared):
    """T2T-ViT's performer token layer on the GEMMs:

    - ``linear(kqv)`` on the normalised tokens, one extra output row (zero weights, bias 1) giving a column of ones
      beside v, so one product below yields the normaliser Σₜφ(kₜ) with φ(k)ᵀv;
    - the random-feature exponents of k and q in one ``linear`` on the strided [k | q] view with the block-diagonal
      weight [[w, 0], [0, w]], then ``exp(t − |x|²/2 − ln √m)`` in place;
    - the two linear-attention products (per image, (m, N)·(N, Dv+1) then (N, m)·(m, Dv+1): data-dependent
      operands, about 2·N·m·(Dv+1) MACs, 1-2% of the layer's) as batched matmuls, the division by the normaliser;
    - ``linear(proj, residual=v)``, then the LayerNorm'd MLP: ``linear(fc1, gelu)``, ``linear(fc2, residual)``.
    """

    kind = "performer"
    packable = ("kqv", "feature", "proj", "fc1", "fc2")

    def __init__(self, spec: PerformerSpec, dtype, device):
        d, m = spec.features.shape[1], spec.features.shape[0]
        self.dim, self.m, self.eps = d, m, spec.eps
        self.norm1_eps, self.norm2_eps = spec.norm1_eps, spec.norm2_eps
        self.log_norm = 0.5 * math.log(m)
        kqv = Projection(torch.cat([spec.kqv.weight, spec.kqv.weight.new_zeros(1, spec.kqv.weight.shape[1])]),
                         torch.cat([spec.kqv.bias, spec.kqv.bias.new_ones(1)]), spec.kqv.where)
        w = spec.features
        feature = Projection(torch.block_diag(w, w), w.new_zeros(2 * m), f"{spec.where}.w")
        super().__init__(spec.where, dtype, device, **self.projection("kqv", kqv),
                         **self.projection("feature", feature), **self.projection("proj", spec.proj), **self.projection("fc1", spec.fc1),
                         **self.projection("fc2", spec.fc2))

    def _set_arguments(self) -> None:
        self._kqv, self._feature, self._proj, self._fc1, self._fc2 = (
            self._linear_arguments(name) for name in self.packable)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ops, d, m = self._ops, self.dim, self.m
        kqv = ops.linear(ops.layer_norm(x, None, None, self.norm1_eps), *self._kqv, None, None)
        kq, v_ones = kqv[..., :2 * d], kqv[..., 2 * d:]
        # The features and products in ≥ fp32, as the reference: exp reaches e^(m/2) = e^16, past fp16's range.
        wide = torch.promote_types(x.dtype, torch.float32)
        exponent = ops.linear(kq, *self._feature, None, None).to(wide)  # (B, N, 2m): k·wᵀ | q·wᵀ
        kq_wide = kq.to(wide)
        half_sq = (kq_wide * kq_wide).view(*kq.shape[:-1], 2, d).sum(-1) * 0.5 + self.log_norm
        phi = exponent.view(*kq.shape[:-1], 2, m).sub_(half_sq.unsqueeze(-1)).exp_()
        k_phi, q_phi = phi[..., 0, :], phi[..., 1, :]
        kv = torch.matmul(k_phi.transpose(1, 2), v_ones.to(wide))  # (B, m, Dv + 1): φ(k)ᵀv | Σₜφ(kₜ)
        out = torch.matmul(q_phi, kv)                               # (B, N, Dv + 1): numerator | normaliser
        y = (out[..., :d] / out[..., d:].add_(self.eps)).to(x.dtype)
        x = ops.linear(y, *self._proj, None, v_ones[..., :d])
        hidden = ops.linear(ops.layer_norm(x, None, None, self.norm2_eps), *self._fc1, "gelu", None)
        return ops.linear(hidden, *self._fc2, None, x)


class FusedLayerNorm(_Prepared):
    kind = "norm"

    def __init__(self, spec: LayerNormSpec, dtype, device):
        self.eps = spec.eps
        tensors = {name: t for name, t in (("weight", spec.weight), ("bias", spec.bias)) if t is not None}
        super().__init__(spec.where, dtype, device, **tensors)

    def _set_arguments(self) -> None:
        self._affine = (getattr(self, "weight", None), getattr(self, "bias", None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._ops.layer_norm(x, *self._affine, self.eps)


class FusedLinear(_Prepared):
    kind = "linear"
    packable = ("proj",)

    def __init__(self, spec: LinearSpec, dtype, device):
        self.norm_eps = spec.norm_eps
        super().__init__(spec.where, dtype, device, **self.projection("proj", spec.proj))

    def _set_arguments(self) -> None:
        self._proj = self._linear_arguments("proj")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = x if self.norm_eps is None else self._ops.layer_norm(x, None, None, self.norm_eps)
        return self._ops.linear(normed, *self._proj, None, None)


class FusedClassTokens(_Prepared):
    """Class tokens prepended and the position table added, written once into the output (cls + pos precomputed)."""

    kind = "tokens"

    def __init__(self, spec: ClassTokenSpec, dtype, device):
        n_cls = spec.cls.shape[0]
        super().__init__(spec.where, dtype, device, cls_pos=spec.cls + spec.pos[:n_cls], pos=spec.pos[n_cls:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        n_cls = self.cls_pos.shape[0]
        out = x.new_empty(b, n_cls + n, c)
        out[:, :n_cls] = self.cls_pos
        torch.add(x, self.pos, out=out[:, n_cls:])
        return out


_FUSED = {"attention": FusedAttention, "shrink": FusedShrink, "mlp": FusedMLP, "pool": FusedPool, "conv": FusedConv,
          "unfold": FusedUnfold, "softmax": FusedSoftmaxAttention, "performer": FusedPerformer, "norm": FusedLayerNorm,
          "linear": FusedLinear, "tokens": FusedClassTokens}


def _stages(description: ModelDescription) -> tuple[tuple[int, ...], tuple]:
    """(end block index of each stage, its token grid): a stage ends before each block that changes the grid (shrink,
    conv) and at the last block."""
    ends, grids, side = [], [], description.token_side
    for i, b in enumerate(description.blocks):
        if b.kind in ("shrink", "conv"):
            ends.append(i)
            grids.append(side)
            side = grid(*query_grid(side, b.stride)) if b.kind == "shrink" else b.conv.out_side(side)
    return tuple(ends) + (len(description.blocks),), tuple(grids) + (side,)


class OptimizedLeViT(nn.Module):
    """A model of any recognised family as fused ops: images (B, C, H, W) in, eval logits (the mean of the heads) out, in the images' dtype.

    Built by :func:`levit_kernels.optimize`; inference only, for one device and dtype (``.to()`` and ``train()``
    are refused: optimize the source model again instead), and for the source model's input size: its bias tables
    are the source's, over the source's grids, so images that give other grids are refused with an error naming both
    sizes (build the source model at the new size — its checkpoint resampled on load — and optimize that).
    :meth:`forward_features` returns each stage's map, as the source models' ``forward_features(x, stages)``.
    """

    def __init__(self, description: ModelDescription, backend: str, dtype: torch.dtype, device: torch.device,
                 channels_last: bool = True):
        super().__init__()
        self.source, self.backend, self.dtype, self.device = description.source, backend, dtype, device
        self.in_channels = description.in_channels
        self.image_ranges, self.image_sides = description.image_ranges, description.image_sides
        self.stem = FusedStem(description.stem, dtype, device, channels_last)
        self.blocks = nn.ModuleList([_FUSED[spec.kind](spec, dtype, device) for spec in description.blocks])
        self.head = FusedHead(description.head_spec, dtype, device)
        self.num_classes = description.head.weight.shape[0] if description.heads_merged else None
        self.step_names = ["stem"] + [b.where for b in self.blocks] + ["head"]
        self.step_kinds = ["stem"] + [b.kind for b in self.blocks] + ["head"]
        self._steps: list[Callable] = [self.stem.forward] + [b.forward for b in self.blocks] + [self.head.forward]
        self.stage_ends, self.stage_grids = _stages(description)
        self.packed = False
        super().train(False)

    @property
    def image_size(self):
        """The largest image side the model takes (224 for the paper's LeViTs), or (H, W) when not square."""
        return grid(self.image_ranges[0][1], self.image_ranges[1][1])

    @property
    def image_hw(self) -> tuple[int, int]:
        """(H, W) of the largest images the model takes: what a probe input is made of."""
        return self.image_ranges[0][1], self.image_ranges[1][1]

    def bind(self, ops: Runtime) -> None:
        """Make every block call the functions of ``ops``."""
        for block in [*self.blocks, self.head]:
            block.bind(ops)

    def pack(self, pack_weight: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Pack every projection that runs through linear/mlp with the backend's ``pack_weight`` (once)."""
        for block in [*self.blocks, self.head]:
            block.pack(pack_weight)
        self.packed = True

    def _check(self, images) -> None:
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != self.in_channels:
            self._bad_input(images)
        (h_lo, h_hi), (w_lo, w_hi) = self.image_ranges
        if not (h_lo <= images.shape[2] <= h_hi and w_lo <= images.shape[3] <= w_hi) or images.device != self.device:
            self._bad_input(images)

    def _bad_input(self, images):
        hs, ws = (f"{hi}" if lo == hi else f"{lo}..{hi}" for lo, hi in self.image_ranges)
        got = (f"shape {tuple(images.shape)} on {images.device}" if isinstance(images, torch.Tensor)
               else type(images).__name__)
        size = (f": {images.shape[2]}×{images.shape[3]} images, but it was built for the source model's size, "
                f"{hs}×{ws} images (token grid {grid_text(self.stage_grids[0])}); for another size, build the source "
                f"model at that size and optimize it" if isinstance(images, torch.Tensor) and images.dim() == 4
                else "")
        sides = f"H, W in {hs}" if hs == ws else f"H in {hs} and W in {ws}"
        raise ValueError(f"optimized model: input must be images of shape (B, {self.in_channels}, H, W) with {sides} "
                         f"on {self.device}, got {got}{size}")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self._check(images)
        x = images
        for step in self._steps:
            x = step(x)
        return x if x.dtype == images.dtype or not images.is_floating_point() else x.to(images.dtype)

    def forward_features(self, images: torch.Tensor, stages=None) -> list[torch.Tensor]:
        """Each stage's output map (B, C_s, H_s, W_s) — of every stage, or of ``stages`` (increasing indices) — in
        the images' dtype: the model as a detection/segmentation backbone. A stage ends before each block that
        changes the grid (a shrink attention, a strided convolution) and at the last block, as the source models'
        ``forward_features(x, stages)``."""
        if any(kind in ("unfold", "tokens") for kind in self.step_kinds):
            raise NotImplementedError(f"optimized model: forward_features gives the stage maps of the hierarchical "
                                      f"families (LeViT, EfficientFormer); {self.source} has soft splits or class "
                                      f"tokens, whose tokens are no single map")
        count = len(self.stage_ends)
        wanted = tuple(range(count)) if stages is None else tuple(stages) if isinstance(
            stages, (tuple, list, range)) else None
        if not wanted or any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < count for s in wanted) \
                or list(wanted) != sorted(set(wanted)):
            raise ValueError(f"optimized model: stages must be increasing stage indices in [0, {count}), "
                             f"got {stages!r}")
        self._check(images)
        x, maps, step = self._steps[0](images), [], 0
        for stage in range(wanted[-1] + 1):
            for block in self.blocks[step:self.stage_ends[stage]]:
                x = block(x)
            step = self.stage_ends[stage]
            if stage in wanted:
                h, w = grid_sides(self.stage_grids[stage])
                feature = x.transpose(1, 2).reshape(x.shape[0], x.shape[2], h, w)
                maps.append(feature if feature.dtype == images.dtype or not images.is_floating_point()
                            else feature.to(images.dtype))
        return maps

    def trace(self, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(the tokens after the stem and after each block, logits) — what :func:`levit_kernels.verify` compares."""
        self._check(images)
        outputs, x = [], images
        for step in self._steps:
            x = step(x)
            outputs.append(x)
        return outputs[:-1], x

    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError("optimized model: inference only (BatchNorms are folded); train the source model")
        return super().train(False)

    def _apply(self, fn, *args, **kwargs):
        raise RuntimeError(f"optimized model: its weights are prepared for {self.device} in {self.dtype} and cannot "
                           f"be moved or cast; call levit_kernels.optimize(model, backend=..., dtype=...) on the "
                           f"source model instead")

    def extra_repr(self) -> str:
        return (f"source={self.source!r}, backend={self.backend!r}, dtype={self.dtype}, device={self.device}, "
                f"packed={self.packed}")
