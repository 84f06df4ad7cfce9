"""Multiply-adds per image of each step of an optimized model, from its description (any family): the stem, every
block, the head — what the profile and the end-to-end benchmarks divide by to report GFLOP/s and % of peak.

Counted in LeViT's convention (:mod:`levit.flops`, the paper's): every projection and convolution, and per
attention logit D (q·kᵀ) + 1 (softmax) + Dv (attention·v); normalisations, activations, pooling and residual adds
are free. Folded weights have the shapes of the source's, so the counts are the source model's with its eval heads
merged into one (LeViT-128S: ``levit.count_macs(name, distillation=False)`` exactly).
"""
from __future__ import annotations

from levit_kernels.optimize.specs import Conv, ModelDescription, Projection
from levit_kernels.reference import grid, grid_points, query_grid


def _conv(conv: Conv, side) -> tuple[int, object]:
    """(MACs, output side) of ``conv`` on a side×side (or (H, W)) map."""
    out_side = conv.out_side(side)
    c_out, c_in, kh, kw = conv.weight.shape
    return grid_points(out_side) * c_out * c_in * kh * kw, out_side


def _proj(p: Projection, tokens: int) -> int:
    return tokens * p.weight.shape[0] * p.weight.shape[1]


def step_macs(description: ModelDescription, image_side) -> list[int]:
    """MACs per image of the stem, each block of ``description.blocks`` and the head, on images of side
    ``image_side`` (an int for square images, or (H, W))."""
    stem, side = 0, image_side
    for conv in description.stem:
        macs, side = _conv(conv, side)
        stem += macs
    steps, class_tokens = [stem], 0
    for b in description.blocks:
        n = grid_points(side) + class_tokens
        if b.kind in ("unfold", "norm", "tokens"):  # a gather, a normalisation, a concatenation and an add
            macs = 0
            side = b.out_side() if b.kind == "unfold" else side
            class_tokens += b.cls.shape[0] if b.kind == "tokens" else 0
        elif b.kind == "linear":
            macs = _proj(b.proj, n)
        elif b.kind == "softmax":
            macs = (_proj(b.qkv, n) + b.heads * n * n * (b.key_dim + 1 + b.value_dim)
                    + (0 if b.proj is None else _proj(b.proj, n)))
        elif b.kind == "performer":  # the features of k and q, then φ(k)ᵀ[v | 1] and φ(q)·that
            m, d = b.features.shape
            macs = (_proj(b.kqv, n) + 2 * n * m * d + 2 * n * m * (d + 1) + _proj(b.proj, n) + _proj(b.fc1, n)
                    + _proj(b.fc2, n))
        elif b.kind == "conv":
            macs, side = _conv(b.conv, side)
        elif b.kind == "pool":
            macs = 0
        elif b.kind == "mlp":
            macs = _proj(b.fc1, n) + _proj(b.fc2, n)
        elif b.kind == "attention":
            macs = _proj(b.qkv, n) + b.heads * n * n * (b.key_dim + 1 + b.value_dim) + _proj(b.proj, n)
        else:  # shrink
            side = grid(*query_grid(side, b.stride))
            nq = grid_points(side)
            macs = (_proj(b.kv, n) + _proj(b.q, nq) + b.heads * nq * n * (b.key_dim + 1 + b.value_dim)
                    + _proj(b.proj, nq))
        steps.append(macs)
    head = description.head_spec.classifier
    steps.append(0 if head is None else _proj(head, 1))
    return steps
