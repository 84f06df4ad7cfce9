"""layer_norm (one program per tile of rows, each row whole in registers) and pool_mixer (EfficientFormer's Meta4D
token mixer; one program per image × run of BLOCK_P map positions × tile of channels).

No tl.dot here, so nothing is autotuned: the tiles are fixed by the shapes. Both compute in fp32 and store in the
input dtype. pool_mixer sums the P×P window directly from memory (the neighbouring rows' loads hit the cache that
the neighbouring programs fill); every load is masked, the out-of-map taps included.
"""
import triton
import triton.language as tl

from levit_kernels import _debug
from levit_kernels.backends.triton import _runtime

_runtime.freeze_kernel_mode()

# Floats per layer_norm tile (rows × the row width padded to a power of two): 16 rows of 256, 4 of 1024.
_LN_TILE = 4096
# pool_mixer tile: map positions (a run of h·W + w, across rows) × channels, on 8 warps: at Triton's default 4 the
# unrolled 3×3 window's 64-bit tap pointers spilled 424 B on sm_80 and 64 B on sm_90 (fp32 and bf16 alike;
# scripts/triton_compile_check.py, triton 3.9); 8 warps (or a 32×64 tile on 4) spill nothing.
_POOL_BLOCK_P, _POOL_BLOCK_C, _POOL_WARPS = 64, 64, 8


@triton.jit
def _layer_norm_kernel(x_ptr, w_ptr, b_ptr, out_ptr, M, C, sx_m, sx_c, sw, sb, so_m, eps,
                       HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr,
                       BLOCK_C: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_C)
    col_ok = cols < C
    ok = (rows < M)[:, None] & col_ok[None, :]
    x = tl.load(x_ptr + rows.to(tl.int64)[:, None] * sx_m + cols[None, :] * sx_c, mask=ok, other=0.0)
    x = x.to(tl.float32)
    # Corrected two-pass statistics, as the CPU kernel: deviations from a first mean, whose own mean corrects it
    # (a row of 1000 ± 1 carries the fp32 rounding of its sum in the first mean alone). Padding columns count 0.
    d = tl.where(ok, x - (tl.sum(x, axis=1) / C)[:, None], 0.0)
    shift = tl.sum(d, axis=1) / C
    var = tl.maximum(tl.sum(d * d, axis=1) / C - shift * shift, 0.0)
    rstd = 1.0 / tl.sqrt(var + eps)
    y = (d - shift[:, None]) * rstd[:, None]
    if HAS_WEIGHT:
        y = y * tl.load(w_ptr + cols * sw, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    if HAS_BIAS:
        y = y + tl.load(b_ptr + cols * sb, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    tl.store(out_ptr + rows.to(tl.int64)[:, None] * so_m + cols[None, :], y.to(out_ptr.dtype.element_ty), mask=ok)


def layer_norm(x, weight, bias, eps):
    c = x.shape[-1]
    out = _debug.new_output(x.shape, x)
    if out.numel() == 0:
        return out
    x2, out2 = x.reshape(-1, c), out.view(-1, c)
    m = x2.shape[0]
    block_m, block_c = layer_norm_tiles(c)
    _layer_norm_kernel[(triton.cdiv(m, block_m),)](
        x2, weight if weight is not None else x2, bias if bias is not None else x2, out2, m, c, *x2.stride(),
        weight.stride(0) if weight is not None else 0, bias.stride(0) if bias is not None else 0, out2.stride(0),
        eps, HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None, BLOCK_M=block_m, BLOCK_C=block_c)
    return out


@triton.jit
def _pool_mixer_kernel(x_ptr, ls_ptr, out_ptr, H, W, C, sx_b, sx_h, sx_w, sx_c, sls, so_b, so_h, so_w,
                       POOL: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    RADIUS: tl.constexpr = POOL // 2
    b = tl.program_id(0)
    pos = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)  # positions h·W + w of the map
    cs = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    h, w = pos // W, pos % W
    pos_ok, c_ok = pos < H * W, cs < C
    image = x_ptr + b.to(tl.int64) * sx_b
    channel = cs[None, :] * sx_c
    acc = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
    for dy in range(POOL):
        y = h + dy - RADIUS
        row_ok = pos_ok & (y >= 0) & (y < H)
        for dx in range(POOL):
            wx = w + dx - RADIUS
            ok = (row_ok & (wx >= 0) & (wx < W))[:, None] & c_ok[None, :]
            tap = image + y.to(tl.int64)[:, None] * sx_h + wx.to(tl.int64)[:, None] * sx_w + channel
            acc += tl.load(tap, mask=ok, other=0.0).to(tl.float32)
    # count_include_pad=False: the window's in-map points.
    rows_in = tl.minimum(h + RADIUS, H - 1) - tl.maximum(h - RADIUS, 0) + 1
    cols_in = tl.minimum(w + RADIUS, W - 1) - tl.maximum(w - RADIUS, 0) + 1
    avg = acc / (rows_in * cols_in).to(tl.float32)[:, None]
    ok = pos_ok[:, None] & c_ok[None, :]
    centre = image + h.to(tl.int64)[:, None] * sx_h + w.to(tl.int64)[:, None] * sx_w + channel
    xc = tl.load(centre, mask=ok, other=0.0).to(tl.float32)
    ls = tl.load(ls_ptr + cs * sls, mask=c_ok, other=0.0).to(tl.float32)[None, :]
    out = xc + ls * (avg - xc)
    dst = out_ptr + b.to(tl.int64) * so_b + h.to(tl.int64)[:, None] * so_h + w.to(tl.int64)[:, None] * so_w
    tl.store(dst + cs[None, :], out.to(out_ptr.dtype.element_ty), mask=ok)


def pool_mixer(x, layer_scale, pool_size):
    b, h, w, c = x.shape
    out = _debug.new_output(x.shape, x)
    if out.numel() == 0:
        return out
    block_p, block_c = min(_POOL_BLOCK_P, _runtime.block(h * w, 1)), min(_POOL_BLOCK_C, _runtime.block(c, 1))
    grid = (b, triton.cdiv(h * w, block_p), triton.cdiv(c, block_c))
    _pool_mixer_kernel[grid](x, layer_scale, out, h, w, c, *x.stride(), layer_scale.stride(0), *out.stride()[:3],
                             POOL=pool_size, BLOCK_P=block_p, BLOCK_C=block_c, num_warps=_POOL_WARPS)
    return out


def layer_norm_tiles(c: int) -> tuple[int, int]:
    """(BLOCK_M, BLOCK_C) of a layer_norm over rows of width c."""
    block_c = _runtime.block(c, 1)
    return max(1, min(16, _LN_TILE // block_c)), block_c


def compile_cases():
    """For scripts/triton_compile_check.py: layer_norm at every width the families normalise (EfficientFormer's
    last-stage Meta3D blocks; T2T-ViT's token layers — 3·7·7 and 64·3·3 soft-split patches, the 64-wide token
    MLPs — and its backbone), one class per tile; pool_mixer at EfficientFormer's pool size and widths. Neither is
    autotuned: layer_norm launches with Triton's default warps and stages, pool_mixer on _POOL_WARPS."""
    from levit import efficientformer, t2t_vit
    from levit_kernels.backends.triton.compile_cases import CompileCase, distinct

    default = (triton.Config({}, num_warps=4, num_stages=3),)
    patch_widths = [t2t_vit.IN_CHANNELS * k * k if i == 0 else t2t_vit.TOKEN_DIM * k * k
                    for i, (k, _, _) in enumerate(t2t_vit.SOFT_SPLITS[:2])]
    widths = sorted({s.widths[-1] for s in efficientformer.SPECS.values()} | set(patch_widths)
                    | {t2t_vit.TOKEN_DIM} | {s.embed_dim for s in t2t_vit.SPECS.values()})
    cases = []
    for c in widths:
        block_m, block_c = layer_norm_tiles(c)
        consts = dict(HAS_WEIGHT=True, HAS_BIAS=True, BLOCK_M=block_m, BLOCK_C=block_c)
        cases.append(CompileCase(_layer_norm_kernel, f"layer_norm C{c}", consts, default))
    norms, cases = distinct(cases, ("BLOCK_M", "BLOCK_C")), []
    for spec in efficientformer.SPECS.values():
        for stage, c in enumerate(spec.widths):
            side = 56 >> stage  # the stem's 224 → 56, then one stride-2 downsampling per stage
            consts = dict(POOL=spec.pool_size, BLOCK_P=min(_POOL_BLOCK_P, _runtime.block(side * side, 1)),
                          BLOCK_C=min(_POOL_BLOCK_C, _runtime.block(c, 1)))
            cases.append(CompileCase(_pool_mixer_kernel, f"pool_mixer {spec.name} s{stage} {side}x{side} C{c}",
                                     consts, (triton.Config({}, num_warps=_POOL_WARPS, num_stages=3),)))
    return norms + distinct(cases, ("POOL", "BLOCK_P", "BLOCK_C"))
