"""Biased attention: ``act(softmax(scale·q·kᵀ + bias) · v)`` with LeViT's relative-position bias.

A program owns G consecutive (batch, head) pairs (G > 1 only for tiny sequences: their rows and keys are packed
block-diagonally into one tile, cross-pair scores masked out) and, when the queries are many, a slice of their query
tiles. It loads all keys and values of its pairs once (BLOCK_N ≥ G·Nk: no online softmax, the whole row is on chip),
then per query tile: scores on tl.dot, the bias gathered from the (H, Rh·Rw) table by index arithmetic (keys on
the Rh×Rw grid, queries on its stride-s subgrid of width QW = ceil(Rw/s)), an fp32
softmax, p·v on tl.dot, and the (optionally Hardswished) rows stored token-major into (B, Nq, H·Dv).
Scores and probabilities never leave the chip.
"""
import triton
import triton.language as tl

from levit_kernels import _debug
from levit_kernels.backends.triton import _runtime, table_bias_streamed
from levit_kernels.backends.triton._jit import activate, activation_code
from levit_kernels.reference import grid_sides, query_grid

_runtime.freeze_kernel_mode()

LOG2E = tl.constexpr(1.4426950408889634)
# Pack (batch, head) pairs into one program until the packed keys reach this many columns.
PACK_COLUMNS = 64


@triton.jit
def load_keys_values(k_ptr, v_ptr, sk_b, sk_h, sk_n, sk_d, sv_b, sv_h, sv_n, sv_d, bh0, BH,
                     H: tl.constexpr, NK: tl.constexpr, D: tl.constexpr, DV: tl.constexpr, G: tl.constexpr,
                     BLOCK_N: tl.constexpr, D_PAD: tl.constexpr, DV_PAD: tl.constexpr):
    """kᵀ (D_PAD, BLOCK_N) and v (BLOCK_N, DV_PAD) of pairs bh0 … bh0+G-1, zero-padded; and each column's pair,
    key index and validity."""
    c = tl.arange(0, BLOCK_N)
    col_bh = bh0 + c // NK
    col_j = c % NK
    col_ok = (c < G * NK) & (col_bh < BH)
    col_b = (col_bh // H).to(tl.int64)
    col_h = col_bh % H
    d = tl.arange(0, D_PAD)
    k_rows = col_b * sk_b + col_h * sk_h + col_j * sk_n
    kt = tl.load(k_ptr + k_rows[None, :] + d[:, None] * sk_d, mask=col_ok[None, :] & (d < D)[:, None], other=0.0)
    dv = tl.arange(0, DV_PAD)
    v_rows = col_b * sv_b + col_h * sv_h + col_j * sv_n
    v = tl.load(v_ptr + v_rows[:, None] + dv[None, :] * sv_d, mask=col_ok[:, None] & (dv < DV)[None, :], other=0.0)
    return kt, v, col_bh, col_j, col_ok


@triton.jit
def query_rows(tile, bh0, BH, NQ: tl.constexpr, G: tl.constexpr, BLOCK_M: tl.constexpr):
    """Pair, query index and validity of the rows of query tile ``tile`` (tiles run over the G·Nq packed rows)."""
    r = tile * BLOCK_M + tl.arange(0, BLOCK_M)
    row_bh = bh0 + r // NQ
    row_i = r % NQ
    row_ok = (r < G * NQ) & (row_bh < BH)
    return row_bh, row_i, row_ok


@triton.jit
def attend(q, kt, v, row_bh, row_i, row_ok, col_bh, col_j, col_ok, bias_ptr, sbias_h, sbias_i, scale,
           H: tl.constexpr, RW: tl.constexpr, STRIDE: tl.constexpr, QW: tl.constexpr, G: tl.constexpr,
           PRECISION: tl.constexpr):
    """softmax(scale·q·kᵀ + bias)·v for one query tile, fp32 (BLOCK_M, DV_PAD)."""
    s = tl.dot(q, kt, input_precision=PRECISION)
    # Query i sits at (yi·s, xi·s) on the key grid, key j at (yj, xj): bias index |Δy|·Rw + |Δx|.
    yi = (row_i // QW) * STRIDE
    xi = (row_i % QW) * STRIDE
    yj = col_j // RW
    xj = col_j % RW
    idx = tl.abs(yi[:, None] - yj[None, :]) * RW + tl.abs(xi[:, None] - xj[None, :])
    valid = row_ok[:, None] & col_ok[None, :]
    if G > 1:
        valid = valid & (row_bh[:, None] == col_bh[None, :])
    row_h = row_bh % H
    bias = tl.load(bias_ptr + row_h[:, None] * sbias_h + idx * sbias_i, mask=valid, other=0.0)
    logits = tl.where(valid, (s * scale + bias.to(tl.float32)) * LOG2E, float("-inf"))
    # Padding rows have no valid key: keep their max finite so they produce no NaN (they are never stored). A real
    # row whose every score is -inf gets NaN, as torch.softmax gives.
    row_max = tl.where(row_ok, tl.max(logits, 1), 0.0)
    p = tl.exp2(logits - row_max[:, None])
    row_sum = tl.sum(p, 1)
    o = tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    if G > 1:
        # Cross-pair weights are 0, but 0·NaN and 0·inf are NaN: a NaN or inf in one pair's v must not reach the
        # other pairs' rows. When v has one, each pair's rows are recomputed against its own values only.
        bad_v = tl.max(tl.where((v != v) | (tl.abs(v) == float("inf")), 1, 0))
        if bad_v > 0:
            bh0 = tl.min(col_bh, 0)
            for g in tl.static_range(G):
                own_v = tl.where((col_bh == bh0 + g)[:, None], v, tl.zeros_like(v))
                own_o = tl.dot(p.to(v.dtype), own_v, input_precision=PRECISION)
                o = tl.where((row_bh == bh0 + g)[:, None], own_o, o)
    return o / tl.where(row_sum > 0, row_sum, 1.0)[:, None]


@triton.jit
def store_token_major(out_ptr, o, row_bh, row_i, row_ok, so_b, so_n, so_c,
                      H: tl.constexpr, DV: tl.constexpr, DV_PAD: tl.constexpr, ACT: tl.constexpr):
    """Rows of pair (b, h), query i → out[b, i, h·Dv : (h+1)·Dv], the activation of code ACT applied first."""
    o = activate(o, ACT)
    dv = tl.arange(0, DV_PAD)
    row_b = (row_bh // H).to(tl.int64)
    row_h = row_bh % H
    rows = row_b * so_b + row_i * so_n + row_h * DV * so_c
    tl.store(out_ptr + rows[:, None] + dv[None, :] * so_c, o.to(out_ptr.dtype.element_ty),
             mask=row_ok[:, None] & (dv < DV)[None, :])


def _query_tile(bm, tiles, warps):
    return triton.Config({"BLOCK_M": bm, "TILES": tiles}, num_warps=warps, num_stages=1)


def query_tile_configs(prune_key: str, tiles_by_dtype: dict):
    """Autotune space of the attention kernels: query tile, tiles per program (K/V reuse), warps, from
    ``tiles_by_dtype`` ({"fp32" | "half": [(BLOCK_M, TILES, warps), ...]}, each list's untuned default first).
    Returns (every GPU config, the lists by dtype class, the configs the autotuner gets, its prune). The prune keeps
    the launch's dtype list (read off k_ptr, which both kernels take), then the tiles the packed rows can fill."""
    by_dtype = {name: [_query_tile(*t) for t in tiles] for name, tiles in tiles_by_dtype.items()}
    gpu = _runtime.unique(c for configs in by_dtype.values() for c in configs)
    # Interpreted: small tiles and two per program so the tile loop and the multi-program grid both run.
    interpreted = _query_tile(16, 2, 4)

    def prune(configs, named_args, **kwargs):
        args = {**named_args, **kwargs}
        configs = _runtime.for_dtype(configs, by_dtype, args["k_ptr"].dtype)
        rows = args[prune_key]
        kept = [c for c in configs if c.kwargs["BLOCK_M"] <= _runtime.block(rows)
                and (c.kwargs["TILES"] == 1 or c.kwargs["BLOCK_M"] < rows)]
        return kept or configs[:1]

    return gpu, by_dtype, _runtime.tuned_configs(by_dtype, interpreted), {"early_config_prune": prune}


# Kept per dtype where every config compiles without spills for sm_80 and sm_90 at every LeViT shape
# (scripts/triton_compile_check.py, triton 3.9). Dropped, fp32: (32, 1, 8) spilled 120–248 B at the packed stage-2
# shapes (G = 4), 4-warp fp32 tiles hold K and V in twice the registers, (16, 4, 8) 24 B on sm_90 at LeViT-128S's
# stage 2 (N 16×16, D 16, Dv 32, G 4: found by the full matrix, which --quick's coverage rule had skipped); 16-bit: (64, 1, 8) spilled 32 B at G = 4,
# (64, 4, 8) 24 B and (16, 1, 4) 40 B at LeViT-192's stage 0 on sm_80; 128-row tiles spilled 256–6632 B.
GPU_CONFIGS, GPU_CONFIGS_BY_DTYPE, _CONFIGS, _PRUNE = query_tile_configs("PACKED_ROWS", {
    "fp32": [(16, 1, 8)],
    "half": [(32, 1, 4), (16, 1, 8), (32, 1, 8), (32, 4, 8)],
})


@triton.autotune(configs=_CONFIGS, key=["RH", "RW", "STRIDE", "H", "D", "DV", "G"], prune_configs_by=_PRUNE)
@triton.jit
def _biased_attention_kernel(q_ptr, k_ptr, v_ptr, bias_ptr, out_ptr,
                             sq_b, sq_h, sq_n, sq_d, sk_b, sk_h, sk_n, sk_d, sv_b, sv_h, sv_n, sv_d,
                             sbias_h, sbias_i, so_b, so_n, so_c, BH, scale,
                             H: tl.constexpr, RH: tl.constexpr, RW: tl.constexpr, STRIDE: tl.constexpr,
                             QW: tl.constexpr, NQ: tl.constexpr, D: tl.constexpr, DV: tl.constexpr, G: tl.constexpr,
                             PACKED_ROWS: tl.constexpr, BLOCK_N: tl.constexpr, D_PAD: tl.constexpr,
                             DV_PAD: tl.constexpr, PRECISION: tl.constexpr, ACT: tl.constexpr,
                             BLOCK_M: tl.constexpr, TILES: tl.constexpr):
    bh0 = tl.program_id(0) * G
    kt, v, col_bh, col_j, col_ok = load_keys_values(k_ptr, v_ptr, sk_b, sk_h, sk_n, sk_d, sv_b, sv_h, sv_n, sv_d,
                                                    bh0, BH, H, RH * RW, D, DV, G, BLOCK_N, D_PAD, DV_PAD)
    d = tl.arange(0, D_PAD)
    for t in range(TILES):
        row_bh, row_i, row_ok = query_rows(tl.program_id(1) * TILES + t, bh0, BH, NQ, G, BLOCK_M)
        row_b = (row_bh // H).to(tl.int64)
        q_rows = row_b * sq_b + (row_bh % H) * sq_h + row_i * sq_n
        q = tl.load(q_ptr + q_rows[:, None] + d[None, :] * sq_d, mask=row_ok[:, None] & (d < D)[None, :],
                    other=0.0)
        o = attend(q, kt, v, row_bh, row_i, row_ok, col_bh, col_j, col_ok, bias_ptr, sbias_h, sbias_i, scale,
                   H, RW, STRIDE, QW, G, PRECISION)
        store_token_major(out_ptr, o, row_bh, row_i, row_ok, so_b, so_n, so_c, H, DV, DV_PAD, ACT)


def pairs_per_program(nk: int, heads_total: int) -> int:
    """How many (batch, head) pairs one program packs: several only when a pair's keys fill little of a tile."""
    return max(1, min(PACK_COLUMNS // nk, heads_total))


def attention_tiles(kernel_name, nk, d, dv, g, configs):
    """Padded tile sides (BLOCK_N, D_PAD, DV_PAD) and the GPU tl.dot constraint check for every config."""
    block_n, d_pad, dv_pad = _runtime.block(g * nk), _runtime.block(d), _runtime.block(dv)
    for config in configs:
        _runtime.assert_dot_shape(kernel_name, config.kwargs["BLOCK_M"], block_n, d_pad)   # q·kᵀ
        _runtime.assert_dot_shape(kernel_name, config.kwargs["BLOCK_M"], dv_pad, block_n)  # p·v
    return block_n, d_pad, dv_pad


def attention_grid(pairs, g, packed_rows):
    return lambda meta: (triton.cdiv(pairs, g), triton.cdiv(triton.cdiv(packed_rows, meta["BLOCK_M"]), meta["TILES"]))


def biased_attention(q, k, v, attention_biases, resolution, stride, scale, activation):
    rh, rw = grid_sides(resolution)
    b, h, nq, d = q.shape
    nk, dv = k.shape[2], v.shape[3]
    g = pairs_per_program(nk, max(1, b * h))
    block_n, d_pad, dv_pad = attention_tiles("biased_attention", nk, d, dv, g, _CONFIGS)
    if q.numel() and not table_bias_streamed.fits_on_chip(block_n, d_pad, dv_pad, q.element_size()):
        return table_bias_streamed.biased_attention(q, k, v, attention_biases, resolution, stride, scale, activation)
    out = _debug.new_output((b, nq, h * dv), q)
    if out.numel() == 0:
        return out
    _biased_attention_kernel[attention_grid(b * h, g, g * nq)](
        q, k, v, attention_biases, out, *q.stride(), *k.stride(), *v.stride(), *attention_biases.stride(),
        *out.stride(), b * h, scale,
        H=h, RH=rh, RW=rw, STRIDE=stride, QW=query_grid((rh, rw), stride)[1], NQ=nq, D=d, DV=dv, G=g,
        PACKED_ROWS=g * nq, BLOCK_N=block_n, D_PAD=d_pad, DV_PAD=dv_pad,
        PRECISION=_runtime.dot_precision(q.dtype), ACT=activation_code(activation))
    return out


def attention_constexprs(h, r, stride, d, dv, g, configs):
    """The shape constexprs of one attention launch (as :func:`biased_attention` passes them); ``r`` an int R or a
    pair (Rh, Rw)."""
    rh, rw = grid_sides(r)
    qh, qw = query_grid((rh, rw), stride)
    nq, nk = qh * qw, rh * rw
    block_n, d_pad, dv_pad = attention_tiles("biased_attention", nk, d, dv, g, configs)
    return dict(H=h, RH=rh, RW=rw, STRIDE=stride, QW=qw, NQ=nq, D=d, DV=dv, G=g,
                PACKED_ROWS=g * nq, BLOCK_N=block_n, D_PAD=d_pad, DV_PAD=dv_pad, ACT=activation_code("hardswish"))


def on_chip_configs(configs: dict, consts: dict) -> dict:
    """{dtype: configs} with none for the dtypes whose K/V tile this kernel does not take (those launches run the
    flash kernel instead: table_bias_streamed.py)."""
    import torch

    from levit_kernels.backends.triton.compile_cases import DTYPES

    return {name: kept if table_bias_streamed.fits_on_chip(consts["BLOCK_N"], consts["D_PAD"], consts["DV_PAD"],
                                                           getattr(torch, DTYPES[name]).itemsize) else ()
            for name, kept in configs.items()}


def compile_cases():
    """For scripts/triton_compile_check.py: every LeViT attention at a batch large enough for full packing (G is
    the most pairs a program takes); one class per tile set (G, BLOCK_N, D_PAD, DV_PAD) and pruned config list."""
    from levit_kernels.backends.triton.compile_cases import CompileCase, distinct, levit_blocks, per_dtype

    cases = []
    for variant, blk in levit_blocks("attention"):
        g = pairs_per_program(blk.keys, 64 * blk.heads)
        consts = attention_constexprs(blk.heads, blk.resolution, blk.stride, blk.key_dim, blk.value_dim, g,
                                      GPU_CONFIGS)
        configs = on_chip_configs(per_dtype(_PRUNE["early_config_prune"], GPU_CONFIGS, consts, "k_ptr"), consts)
        cases.append(CompileCase(_biased_attention_kernel, f"{variant} s{blk.stage} N{consts['NQ']}x"
                                 f"{blk.keys} D{blk.key_dim} DV{blk.value_dim} G{g}", consts, configs))
    return distinct(cases, ("G", "BLOCK_N", "D_PAD", "DV_PAD"))
