"""Shrink attention: LeViT's subsampling attention, queries projected in-kernel.

One program per (batch, head) and slice of query tiles, as in biased.py, except that each query tile is
computed on chip: the rows of x at the stride-s grid points (token (yi·s)·Rw + xi·s, read in place: no subsampled
copy) times the head's D rows of q_weight, plus q_bias, rounded to the input dtype as the reference's linear does.
Then the same biased attention core with the stride-aware bias index.
"""
import triton
import triton.language as tl

from levit_kernels import _debug
from levit_kernels.backends.triton import _runtime, table_bias_streamed
from levit_kernels.backends.triton._jit import activation_code
from levit_kernels.backends.triton.biased import (attend, attention_grid, attention_tiles, load_keys_values,
                                                     on_chip_configs, query_rows, query_tile_configs,
                                                     store_token_major)
from levit_kernels.reference import grid_sides, query_grid

_runtime.freeze_kernel_mode()


@triton.jit
def project_queries(x_ptr, wq_ptr, bq_ptr, sx_b, sx_n, sx_c, sw_o, sw_c, sbq, b, h, row_i, row_ok,
                    RW: tl.constexpr, STRIDE: tl.constexpr, QW: tl.constexpr, C: tl.constexpr,
                    D: tl.constexpr, D_PAD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr,
                    PRECISION: tl.constexpr):
    """q (BLOCK_M, D_PAD) of image b's queries ``row_i`` for head h, in x's dtype; zero in the padded key dims."""
    token = (row_i // QW) * STRIDE * RW + (row_i % QW) * STRIDE
    x_rows = b.to(tl.int64) * sx_b + token * sx_n
    d = tl.arange(0, D_PAD)
    w_rows = (h * D + d) * sw_o
    acc = tl.zeros((BLOCK_M, D_PAD), dtype=tl.float32)
    for c0 in range(0, C, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        xs = tl.load(x_ptr + x_rows[:, None] + c[None, :] * sx_c, mask=row_ok[:, None] & (c < C)[None, :],
                     other=0.0)
        wt = tl.load(wq_ptr + w_rows[None, :] + c[:, None] * sw_c, mask=(d < D)[None, :] & (c < C)[:, None],
                     other=0.0)
        acc = tl.dot(xs, wt, acc, input_precision=PRECISION)
    bias = tl.load(bq_ptr + (h * D + d) * sbq, mask=d < D, other=0.0)
    return (acc + bias.to(tl.float32)[None, :]).to(x_ptr.dtype.element_ty)


# The in-kernel q projection makes this kernel the register-heavier of the two: its own lists (16-bit (32, 1, 4) and
# (32, 4, 8) spilled 48 and 8 B on sm_80 at LeViT-192's stage-1 shrink, where biased attention's did not).
GPU_CONFIGS, GPU_CONFIGS_BY_DTYPE, _CONFIGS, _PRUNE = query_tile_configs("PACKED_ROWS", {
    "fp32": [(16, 1, 8), (16, 4, 8)],
    "half": [(32, 1, 8), (16, 1, 8)],
})


@triton.autotune(configs=_CONFIGS, key=["RH", "RW", "STRIDE", "H", "C", "D", "DV"], prune_configs_by=_PRUNE)
@triton.jit
def _shrink_attention_kernel(x_ptr, wq_ptr, bq_ptr, k_ptr, v_ptr, bias_ptr, out_ptr,
                             sx_b, sx_n, sx_c, sw_o, sw_c, sbq, sk_b, sk_h, sk_n, sk_d, sv_b, sv_h, sv_n, sv_d,
                             sbias_h, sbias_i, so_b, so_n, so_c, BH, scale,
                             H: tl.constexpr, RH: tl.constexpr, RW: tl.constexpr, STRIDE: tl.constexpr,
                             QW: tl.constexpr, NQ: tl.constexpr, C: tl.constexpr, D: tl.constexpr, DV: tl.constexpr,
                             PACKED_ROWS: tl.constexpr, BLOCK_N: tl.constexpr, D_PAD: tl.constexpr,
                             DV_PAD: tl.constexpr, BLOCK_C: tl.constexpr, PRECISION: tl.constexpr,
                             ACT: tl.constexpr, BLOCK_M: tl.constexpr, TILES: tl.constexpr):
    bh = tl.program_id(0)
    kt, v, col_bh, col_j, col_ok = load_keys_values(k_ptr, v_ptr, sk_b, sk_h, sk_n, sk_d, sv_b, sv_h, sv_n, sv_d,
                                                    bh, BH, H, RH * RW, D, DV, 1, BLOCK_N, D_PAD, DV_PAD)
    for t in range(TILES):
        row_bh, row_i, row_ok = query_rows(tl.program_id(1) * TILES + t, bh, BH, NQ, 1, BLOCK_M)
        q = project_queries(x_ptr, wq_ptr, bq_ptr, sx_b, sx_n, sx_c, sw_o, sw_c, sbq, bh // H, bh % H, row_i,
                            row_ok, RW, STRIDE, QW, C, D, D_PAD, BLOCK_M, BLOCK_C, PRECISION)
        o = attend(q, kt, v, row_bh, row_i, row_ok, col_bh, col_j, col_ok, bias_ptr, sbias_h, sbias_i, scale,
                   H, RW, STRIDE, QW, 1, PRECISION)
        store_token_major(out_ptr, o, row_bh, row_i, row_ok, so_b, so_n, so_c, H, DV, DV_PAD, ACT)


def projection_tile(c, d_pad, configs):
    """BLOCK_C, the channel chunk of the query projection, after checking its tl.dot against the GPU rule."""
    block_c = min(64, _runtime.block(c))
    for config in configs:
        _runtime.assert_dot_shape("shrink_attention", config.kwargs["BLOCK_M"], d_pad, block_c)  # x·w_qᵀ
    return block_c


def shrink_attention(x, q_weight, q_bias, k, v, attention_biases, resolution, stride, scale, activation):
    b, h, nk, d = k.shape
    dv, c = v.shape[3], x.shape[2]
    rh, rw = grid_sides(resolution)
    qh, qw = query_grid((rh, rw), stride)
    nq = qh * qw
    block_n, d_pad, dv_pad = attention_tiles("shrink_attention", nk, d, dv, 1, _CONFIGS)
    if b * h * nq and not table_bias_streamed.fits_on_chip(block_n, d_pad, dv_pad, x.element_size()):
        return table_bias_streamed.shrink_attention(x, q_weight, q_bias, k, v, attention_biases, resolution, stride,
                                                    scale, activation)
    out = _debug.new_output((b, nq, h * dv), x)
    if out.numel() == 0:
        return out
    block_c = projection_tile(c, d_pad, _CONFIGS)
    _shrink_attention_kernel[attention_grid(b * h, 1, nq)](
        x, q_weight, q_bias, k, v, attention_biases, out, *x.stride(), *q_weight.stride(), *q_bias.stride(),
        *k.stride(), *v.stride(), *attention_biases.stride(), *out.stride(), b * h, scale,
        H=h, RH=rh, RW=rw, STRIDE=stride, QW=qw, NQ=nq, C=c, D=d, DV=dv,
        PACKED_ROWS=nq, BLOCK_N=block_n, D_PAD=d_pad, DV_PAD=dv_pad, BLOCK_C=block_c,
        PRECISION=_runtime.dot_precision(x.dtype), ACT=activation_code(activation))
    return out


def compile_cases():
    """For scripts/triton_compile_check.py: every LeViT shrink attention; one class per tile set (BLOCK_N, D_PAD,
    DV_PAD, BLOCK_C) and pruned config list."""
    from levit_kernels.backends.triton.compile_cases import CompileCase, distinct, levit_blocks, per_dtype

    cases = []
    for variant, blk in levit_blocks("shrink"):
        (rh, rw), stride, nk = grid_sides(blk.resolution), blk.stride, blk.keys
        qw, nq = query_grid((rh, rw), stride)[1], blk.queries
        block_n, d_pad, dv_pad = attention_tiles("shrink_attention", nk, blk.key_dim, blk.value_dim, 1,
                                                 GPU_CONFIGS)
        consts = dict(H=blk.heads, RH=rh, RW=rw, STRIDE=stride, QW=qw, NQ=nq,
                      C=blk.in_channels, D=blk.key_dim, DV=blk.value_dim, PACKED_ROWS=nq, BLOCK_N=block_n,
                      D_PAD=d_pad, DV_PAD=dv_pad, BLOCK_C=projection_tile(blk.in_channels, d_pad, GPU_CONFIGS),
                      ACT=activation_code("hardswish"))
        cases.append(CompileCase(_shrink_attention_kernel, f"{variant} s{blk.stage} N{nq}x{nk} C{blk.in_channels}"
                                 f" D{blk.key_dim} DV{blk.value_dim}", consts,
                                 on_chip_configs(per_dtype(_PRUNE["early_config_prune"], GPU_CONFIGS, consts, "k_ptr"),
                                                 consts)))
    return distinct(cases, ("BLOCK_N", "D_PAD", "DV_PAD", "BLOCK_C"))
