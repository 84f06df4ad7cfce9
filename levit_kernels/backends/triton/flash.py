"""Attention over long sequences: ``act(softmax(scale·q·kᵀ + bias) · v)``, flash-style.

A program owns one tile of BLOCK_M queries of one (batch, head) pair and streams its keys and values in blocks of
BLOCK_N with an online softmax (running max m, running sum l, the accumulator rescaled by 2^(m − m') when the max
grows), so no score matrix exists beyond one (BLOCK_M, BLOCK_N) block on chip. Scores are formed in the base-2
domain (scale·log2e folded in, exp2). The optional dense bias is read through its strides (0 along broadcast dims),
its loads masked like every other. Rows are stored token-major into (B, Nq, H·Dv), the activation applied first.

Autotuned on a GPU per shape class: head dims (constexpr) and the power-of-two buckets of Nq and Nk (constexpr
NQ_CLASS / NK_CLASS, so a new sequence length in the same bucket reuses the tuned config and the compiled kernel).
"""
import triton
import triton.language as tl

from levit_kernels import _debug
from levit_kernels.backends.triton import _runtime
from levit_kernels.backends.triton._jit import activate, activation_code

_runtime.freeze_kernel_mode()

LOG2E = tl.constexpr(1.4426950408889634)

def _tile(bm, bn, warps, stages):
    return triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=warps, num_stages=stages)


# Query tile, key block, warps, pipeline stages, per dtype class, the untuned default first. (128, 64) with 4-8 warps
# is the usual sm_80/sm_90 choice at head dim 64 in fp16/bf16; fp32 ("ieee") dots need the smaller tiles. Pruned by
# scripts/triton_compile_check.py (triton 3.9, sm_80 + sm_90): fp32 (32, 32, 4 warps) spilled 120 B on sm_80 at
# Dv 128 with a dense bias; with a dense bias every 16-bit tile above 32×32 spilled (64×32: 16–72 B, 64×64:
# 352–552 B, 128×64: 256–432 B: the bias tile's 64-bit pointers), so biased launches keep tiles of at most
# BIAS_TILE elements.
GPU_CONFIGS_BY_DTYPE = {
    "fp32": [_tile(16, 32, 4, 2), _tile(32, 32, 8, 2)],
    "half": [_tile(64, 64, 4, 2), _tile(128, 64, 8, 3), _tile(64, 32, 4, 3), _tile(32, 32, 4, 2)],
}
BIAS_TILE = 32 * 32
GPU_CONFIGS = _runtime.unique(c for configs in GPU_CONFIGS_BY_DTYPE.values() for c in configs)
# Interpreted: 16×16 tiles, so small test sizes still run several query tiles and several key blocks.
INTERPRETED_CONFIG = _tile(16, 16, 4, 1)
_CONFIGS = _runtime.tuned_configs(GPU_CONFIGS_BY_DTYPE, INTERPRETED_CONFIG)


def _prune(configs, named_args, **kwargs):
    args = {**named_args, **kwargs}
    configs = _runtime.for_dtype(configs, GPU_CONFIGS_BY_DTYPE, args["k_ptr"].dtype)
    if args["HAS_BIAS"]:
        configs = [c for c in configs if c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"] <= BIAS_TILE] or configs
    kept = [c for c in configs if c.kwargs["BLOCK_M"] <= args["NQ_CLASS"] and c.kwargs["BLOCK_N"] <= args["NK_CLASS"]]
    return kept or [min(configs, key=lambda c: c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"])]


@triton.autotune(configs=_CONFIGS, key=["NQ_CLASS", "NK_CLASS", "D", "DV", "HAS_BIAS"],
                 prune_configs_by={"early_config_prune": _prune})
@triton.jit
def _flash_attention_kernel(q_ptr, k_ptr, v_ptr, bias_ptr, out_ptr,
                            sq_b, sq_h, sq_n, sq_d, sk_b, sk_h, sk_n, sk_d, sv_b, sv_h, sv_n, sv_d,
                            sb_b, sb_h, sb_i, sb_j, so_b, so_n, so_c, NQ, NK, scale,
                            H: tl.constexpr, D: tl.constexpr, DV: tl.constexpr, D_PAD: tl.constexpr,
                            DV_PAD: tl.constexpr, NQ_CLASS: tl.constexpr, NK_CLASS: tl.constexpr,
                            HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr, ACT: tl.constexpr,
                            BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < NQ
    d = tl.arange(0, D_PAD)
    dv = tl.arange(0, DV_PAD)
    q = tl.load(q_ptr + b * sq_b + h * sq_h + rows[:, None] * sq_n + d[None, :] * sq_d,
                mask=row_ok[:, None] & (d < D)[None, :], other=0.0)
    k_base = k_ptr + b * sk_b + h * sk_h
    v_base = v_ptr + b * sv_b + h * sv_h
    bias_rows = bias_ptr + b * sb_b + h * sb_h + rows[:, None] * sb_i
    qk_scale = scale * LOG2E
    m = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, DV_PAD], tl.float32)
    for j0 in range(0, NK, BLOCK_N):
        cols = j0 + tl.arange(0, BLOCK_N)
        col_ok = cols < NK
        kt = tl.load(k_base + cols[None, :] * sk_n + d[:, None] * sk_d, mask=col_ok[None, :] & (d < D)[:, None],
                     other=0.0)
        s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale
        if HAS_BIAS:
            bias = tl.load(bias_rows + cols[None, :] * sb_j, mask=row_ok[:, None] & col_ok[None, :], other=0.0)
            s += bias.to(tl.float32) * LOG2E
        s = tl.where(col_ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, 1))
        # Every score so far -inf (a masked prefix of the row): shift by 0 so the weights are 0, not NaN. A row
        # masked all through ends with l = 0 and 0/0 = NaN, as torch.softmax gives.
        shift = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2(s - shift[:, None])
        alpha = tl.exp2(m - shift)
        l = l * alpha + tl.sum(p, 1)
        v = tl.load(v_base + cols[:, None] * sv_n + dv[None, :] * sv_d, mask=col_ok[:, None] & (dv < DV)[None, :],
                    other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m = m_new
    o = activate(acc / l[:, None], ACT)
    out_rows = b * so_b + rows[:, None] * so_n + (h * DV + dv[None, :]) * so_c
    tl.store(out_ptr + out_rows, o.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & (dv < DV)[None, :])


def shape_class(n: int) -> int:
    """Power-of-two bucket of a sequence length (at least the 16 a GPU tl.dot side needs)."""
    return _runtime.block(n)


def attention(q, k, v, scale, bias, activation):
    b, h, nq, d = q.shape
    nk, dv = k.shape[2], v.shape[3]
    out = _debug.new_output((b, nq, h * dv), q)
    if out.numel() == 0:
        return out
    d_pad, dv_pad = _runtime.block(d), _runtime.block(dv)
    for config in _CONFIGS:
        _runtime.assert_dot_shape("attention", config.kwargs["BLOCK_M"], config.kwargs["BLOCK_N"], d_pad)   # q·kᵀ
        _runtime.assert_dot_shape("attention", config.kwargs["BLOCK_M"], dv_pad, config.kwargs["BLOCK_N"])  # p·v
    if bias is None:
        bias_arg, bias_strides = q, (0, 0, 0, 0)  # never read (HAS_BIAS false)
    else:
        full = bias.expand(b, h, nq, nk)  # a view: broadcast dims get stride 0
        bias_arg, bias_strides = full, full.stride()
    grid = lambda meta: (triton.cdiv(nq, meta["BLOCK_M"]), b * h)  # noqa: E731
    _flash_attention_kernel[grid](
        q, k, v, bias_arg, out, *q.stride(), *k.stride(), *v.stride(), *bias_strides, *out.stride(), nq, nk, scale,
        H=h, D=d, DV=dv, D_PAD=d_pad, DV_PAD=dv_pad, NQ_CLASS=shape_class(nq), NK_CLASS=shape_class(nk),
        HAS_BIAS=bias is not None, PRECISION=_runtime.dot_precision(q.dtype), ACT=activation_code(activation))
    return out


def compile_cases():
    """For scripts/triton_compile_check.py: T2T-ViT's attentions (token layer 1 at N 3136 and token layer 2 at N 784,
    one head; the backbone at N 197, six heads; head dim 64, no bias), the backbone's shape with a dense bias, and
    the LeViT attentions whose K/V tile the on-chip kernels do not take (table_bias_streamed.py: dense gathered
    bias, Hardswish), in the dtypes that route them here; each with the configs its prune keeps."""
    import torch

    from levit_kernels.backends.triton import table_bias_streamed
    from levit_kernels.backends.triton.compile_cases import DTYPES, CompileCase, levit_blocks, mark_covered, per_dtype

    cases = []
    for name, heads, n, has_bias in (("T2T token layer 1 N3136 D64", 1, 3136, False),
                                     ("T2T token layer 2 N784 D64", 1, 784, False),
                                     ("T2T backbone N197 H6 D64", 6, 197, False),
                                     ("N197 H6 D64 dense bias", 6, 197, True)):
        consts = dict(H=heads, D=64, DV=64, D_PAD=64, DV_PAD=64, NQ_CLASS=shape_class(n), NK_CLASS=shape_class(n),
                      HAS_BIAS=has_bias, ACT=activation_code(None))
        cases.append(CompileCase(_flash_attention_kernel, name, consts, per_dtype(_prune, GPU_CONFIGS, consts, "k_ptr")))
    for kind in ("attention", "shrink"):
        for variant, blk in levit_blocks(kind):
            nk, nq = blk.keys, blk.queries
            d_pad, dv_pad = _runtime.block(blk.key_dim), _runtime.block(blk.value_dim)
            streamed = [name for name, dt in DTYPES.items() if not table_bias_streamed.fits_on_chip(
                _runtime.block(nk), d_pad, dv_pad, getattr(torch, dt).itemsize)]
            if not streamed:
                continue
            consts = dict(H=blk.heads, D=blk.key_dim, DV=blk.value_dim, D_PAD=d_pad, DV_PAD=dv_pad,
                          NQ_CLASS=shape_class(nq), NK_CLASS=shape_class(nk), HAS_BIAS=True,
                          ACT=activation_code("hardswish"))
            configs = per_dtype(_prune, GPU_CONFIGS, consts, "k_ptr")
            cases.append(CompileCase(_flash_attention_kernel, f"{variant} s{blk.stage} {kind} N{nq}x{nk} "
                                     f"D{blk.key_dim} DV{blk.value_dim} table bias streamed", consts,
                                     {d: c if d in streamed else () for d, c in configs.items()}))
    return mark_covered(cases, ("D_PAD", "DV_PAD"), ("ACT", "HAS_BIAS"))
