"""Inputs, float64 references and LeViT shapes for the Triton backend tests (tests/test_triton*.py) and the GPU
benchmark: drawn from a torch.Generator (reproducible from the test's seed) and moved to the device."""
from __future__ import annotations

import contextlib
import dataclasses

import torch

from levit import config as levit_config
from levit_kernels import reference
from levit_kernels.reference import query_grid_side


def randn(gen, *shape, dtype, device, scale=1.0):
    """Normal values drawn on the generator's device (a CUDA generator keeps batch-2048 inputs fast)."""
    return (torch.randn(*shape, generator=gen, device=gen.device) * scale).to(dtype=dtype, device=device)


def as_float64(tensors):
    return [None if t is None else t.detach().to(torch.float64) for t in tensors]


def in_chunks(fn, batched, *args, chunk=256):
    """fn(*args) computed over slices of the batch (dim 0 of the first ``batched`` args), concatenated: keeps the
    float64 reference of a batch-2048 problem within GPU memory."""
    b = args[0].shape[0]
    parts = [fn(*[a[i:i + chunk] for a in args[:batched]], *args[batched:]) for i in range(0, max(b, 1), chunk)]
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def attention_inputs(gen, b, h, r, stride, d, dv, dtype, device, packed=False):
    """(q, k, v, attention_biases). ``packed``: k and v are strided views of one (B, Nk, H·(D+Dv)) tensor (q of
    another when stride > 1, else of the same qkv tensor), laid out per token as the LeViT projections emit them."""
    nq, nk = query_grid_side(r, stride) ** 2, r * r
    biases = randn(gen, h, nk, dtype=dtype, device=device)
    if not packed:
        return (randn(gen, b, h, nq, d, dtype=dtype, device=device),
                randn(gen, b, h, nk, d, dtype=dtype, device=device),
                randn(gen, b, h, nk, dv, dtype=dtype, device=device), biases)
    if stride == 1:
        qkv = randn(gen, b, nk, h, 2 * d + dv, dtype=dtype, device=device)
        q, k, v = qkv.split([d, d, dv], dim=3)
    else:
        kv = randn(gen, b, nk, h, d + dv, dtype=dtype, device=device)
        k, v = kv.split([d, dv], dim=3)
        q = randn(gen, b, nq, h, d, dtype=dtype, device=device)
    return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), biases


def attention_reference(q, k, v, biases, r, stride, activation):
    return in_chunks(reference.biased_attention, 3, *as_float64([q, k, v, biases]), r, stride, None, activation)


def shrink_inputs(gen, b, h, r, stride, c, d, dv, dtype, device, packed=False):
    """(x, q_weight, q_bias, k, v, attention_biases); ``packed``: k, v views of one kv tensor and x a column slice
    of a wider tensor (row stride ≠ C)."""
    _, k, v, biases = attention_inputs(gen, b, h, r, stride, d, dv, dtype, device, packed)
    x = randn(gen, b, r * r, c + (5 if packed else 0), dtype=dtype, device=device)[..., :c]
    q_weight = randn(gen, h * d, c, dtype=dtype, device=device, scale=c ** -0.5)
    q_bias = randn(gen, h * d, dtype=dtype, device=device)
    return x, q_weight, q_bias, k, v, biases


def shrink_reference(x, q_weight, q_bias, k, v, biases, r, stride, activation):
    x, q_weight, q_bias, k, v, biases = as_float64([x, q_weight, q_bias, k, v, biases])

    def per_chunk(x, k, v):
        return reference.shrink_attention(x, q_weight, q_bias, k, v, biases, r, stride, None, activation)

    return in_chunks(per_chunk, 3, x, k, v)


def linear_inputs(gen, lead_shape, c, n, dtype, device, bias=True, residual=False):
    x = randn(gen, *lead_shape, c, dtype=dtype, device=device)
    weight = randn(gen, n, c, dtype=dtype, device=device, scale=c ** -0.5)
    b = randn(gen, n, dtype=dtype, device=device) if bias else None
    res = randn(gen, *lead_shape, n, dtype=dtype, device=device) if residual else None
    return x, weight, b, res


def linear_reference(x, weight, bias, activation, residual):
    x, weight, bias, residual = as_float64([x, weight, bias, residual])
    if residual is None:
        return in_chunks(reference.linear, 1, x, weight, bias, activation)
    return in_chunks(lambda x, r: reference.linear(x, weight, bias, activation, r), 2, x, residual)


def mlp_reference(x, w1, b1, w2, b2, activation, residual):
    return in_chunks(reference.mlp, 1, *as_float64([x, w1, b1, w2, b2]), activation, residual)


def mlp_inputs(gen, lead_shape, c, hidden, c_out, dtype, device):
    x = randn(gen, *lead_shape, c, dtype=dtype, device=device)
    w1 = randn(gen, hidden, c, dtype=dtype, device=device, scale=c ** -0.5)
    b1 = randn(gen, hidden, dtype=dtype, device=device)
    w2 = randn(gen, c_out, hidden, dtype=dtype, device=device, scale=hidden ** -0.5)
    b2 = randn(gen, c_out, dtype=dtype, device=device)
    return x, w1, b1, w2, b2


# ---- the four ops as uniform calls, and forcing one autotune config ------------------------------------------------
def op_calls(gen, batch, dtype, device, att, shrink, tokens, c, hidden):
    """[(op name, call(inputs), inputs, float64 reference(inputs))] through torch.ops.levit_triton: attention at
    ``att``, shrink attention at ``shrink`` (AttentionShapes), linear (c → hidden, with residual) and mlp
    (c → hidden → c) on ``tokens`` tokens per image; Hardswish everywhere it applies."""
    from levit_kernels.backends.triton import library as ops

    a = attention_inputs(gen, batch, att.h, att.r, att.stride, att.d, att.dv, dtype, device, packed=True)
    s = shrink_inputs(gen, batch, shrink.h, shrink.r, shrink.stride, shrink.c, shrink.d, shrink.dv, dtype, device,
                      packed=True)
    lin = linear_inputs(gen, (batch, tokens), c, hidden, dtype, device, residual=True)
    mlp = mlp_inputs(gen, (batch, tokens), c, hidden, c, dtype, device)
    return [
        ("biased_attention", lambda t: ops.biased_attention(*t, (att.r, att.r), att.stride, att.d ** -0.5,
                                                            "hardswish"), a,
         lambda t: attention_reference(*t, att.r, att.stride, "hardswish")),
        ("shrink_attention", lambda t: ops.shrink_attention(*t, (shrink.r, shrink.r), shrink.stride,
                                                            shrink.d ** -0.5, "hardswish"), s,
         lambda t: shrink_reference(*t, shrink.r, shrink.stride, "hardswish")),
        ("linear", lambda t: ops.linear(t[0], t[1], t[2], "hardswish", t[3]), lin,
         lambda t: linear_reference(t[0], t[1], t[2], "hardswish", t[3])),
        ("mlp", lambda t: ops.mlp(*t, "hardswish", True), mlp, lambda t: mlp_reference(*t, "hardswish", True)),
    ]


def autotuned_kernels():
    """{op name: (its autotuned kernel, the GPU candidate configs)}."""
    from levit_kernels.backends.triton import biased, gemm, shrink

    return {"biased_attention": (biased._biased_attention_kernel, biased.GPU_CONFIGS),
            "shrink_attention": (shrink._shrink_attention_kernel, shrink.GPU_CONFIGS),
            "linear": (gemm._linear_kernel, gemm.GPU_LINEAR_CONFIGS),
            "mlp": (gemm._mlp_kernel, gemm.GPU_MLP_CONFIGS)}


@contextlib.contextmanager
def only_config(kernel, config):
    """Run an autotuned kernel with ``config`` alone (no timing of candidates) inside the block."""
    saved = kernel.configs
    kernel.configs = [config]
    kernel.cache.clear()
    try:
        yield
    finally:
        kernel.configs = saved
        kernel.cache.clear()


# ---- LeViT shapes, from levit.config (the model's own op shapes) ----------------------------------------------------
@dataclasses.dataclass(frozen=True)
class AttentionShape:
    r: int
    stride: int
    h: int
    d: int
    dv: int
    c: int  # input width (shrink: channels of x)


def _blocks(variant: str, kind: str):
    return [b for b in levit_config.op_shapes(variant) if b.kind == kind]


def levit_attention_shapes(variant: str) -> list[AttentionShape]:
    return [AttentionShape(b.resolution, b.stride, b.heads, b.key_dim, b.value_dim, b.channels)
            for b in _blocks(variant, "attention")]


def levit_shrink_shapes(variant: str) -> list[AttentionShape]:
    return [AttentionShape(b.resolution, b.stride, b.heads, b.key_dim, b.value_dim, b.in_channels)
            for b in _blocks(variant, "shrink")]


def levit_mlp_shapes(variant: str) -> list[tuple[int, int, int]]:
    """(tokens per image, C, hidden) of every MLP."""
    return [(b.tokens, b.channels, b.hidden) for b in _blocks(variant, "mlp")]


def levit_linear_shapes(variant: str) -> list[tuple[int, int, int]]:
    """(tokens per image, C_in, C_out) of every projection of the transformer blocks."""
    shapes = []
    for b in levit_config.op_shapes(variant):
        for name, (c_in, c_out) in b.linears.items():
            # A shrink's q and proj run on the subsampled grid only.
            tokens = b.queries if b.kind == "shrink" and name in ("q", "proj") else b.resolution ** 2
            shapes.append((tokens, c_in, c_out))
    return shapes


def unique(shapes_by_variant):
    """Distinct shapes over all variants, each with the first variant naming it (for test ids)."""
    seen = {}
    for variant in levit_config.MODEL_NAMES:
        for shape in shapes_by_variant(variant):
            seen.setdefault(shape, variant)
    return [(variant, shape) for shape, variant in seen.items()]
