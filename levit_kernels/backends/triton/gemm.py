"""linear (one GEMM, bias/activation/residual fused in the epilogue) and mlp (both GEMMs in one kernel).

Tokens are the rows: x (..., C) is read as an (M, C) matrix through its strides, weights (out, in) as stored.
mlp: a program owns BLOCK_M tokens × BLOCK_N output channels and walks the hidden width in BLOCK_H slices; each
slice ``act(x·w1[slice]ᵀ + b1[slice])`` is formed on chip, rounded to the input dtype (as the reference's
hidden tensor is) and multiplied straight into the output accumulator, so the (M, 2C) hidden tensor is never
written to memory. When the output is wider than one tile (BLOCK_N < C_out) the hidden slices are recomputed per
output tile; the autotuner weighs that against register pressure.
"""
import triton
import triton.language as tl

from levit_kernels import _debug
from levit_kernels.backends.triton import _runtime
from levit_kernels.backends.triton._jit import activate, activation_code

_runtime.freeze_kernel_mode()


@triton.jit
def epilogue(acc, rows, cols, row_ok, col_ok, bias_ptr, sb, res_ptr, sr_m, sr_n,
             HAS_BIAS: tl.constexpr, ACT: tl.constexpr, HAS_RES: tl.constexpr):
    """``residual + act(acc + bias)`` in fp32."""
    if HAS_BIAS:
        acc += tl.load(bias_ptr + cols * sb, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    acc = activate(acc, ACT)
    if HAS_RES:
        res = tl.load(res_ptr + rows.to(tl.int64)[:, None] * sr_m + cols[None, :] * sr_n,
                      mask=row_ok[:, None] & col_ok[None, :], other=0.0)
        acc += res.to(tl.float32)
    return acc


@triton.jit
def store_tile(out_ptr, acc, rows, cols, row_ok, col_ok, so_m, so_n):
    tl.store(out_ptr + rows.to(tl.int64)[:, None] * so_m + cols[None, :] * so_n, acc.to(out_ptr.dtype.element_ty),
             mask=row_ok[:, None] & col_ok[None, :])


@triton.jit
def matmul_wt(acc, x_ptr, sx_m, sx_k, rows, row_ok, w_ptr, sw_n, sw_k, cols, col_ok, K,
              BLOCK_K: tl.constexpr, PRECISION: tl.constexpr):
    """acc + x[rows, :K] · w[cols, :K]ᵀ, K walked in BLOCK_K chunks."""
    x_rows = rows.to(tl.int64) * sx_m
    for k0 in range(0, K, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        a = tl.load(x_ptr + x_rows[:, None] + k[None, :] * sx_k, mask=row_ok[:, None] & (k < K)[None, :],
                    other=0.0)
        bt = tl.load(w_ptr + cols[None, :] * sw_n + k[:, None] * sw_k, mask=col_ok[None, :] & (k < K)[:, None],
                     other=0.0)
        acc = tl.dot(a, bt, acc, input_precision=PRECISION)
    return acc


def check_dots(kernel, configs):
    """Every tl.dot of every config meets the GPU shape rule (the tiles are fixed by the config alone)."""
    for config in configs:
        c = config.kwargs
        if kernel == "linear":
            dots = [(c["BLOCK_M"], c["BLOCK_N"], c["BLOCK_K"])]
        else:  # mlp: x·w1ᵀ slice, then hidden slice · w2ᵀ
            dots = [(c["BLOCK_M"], c["BLOCK_H"], c["BLOCK_K"]), (c["BLOCK_M"], c["BLOCK_N"], c["BLOCK_H"])]
        for m, n, k in dots:
            _runtime.assert_dot_shape(kernel, m, n, k)


def _gemm_tile(bm, bn, bk, warps, stages, **extra):
    return triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, **extra, "BLOCK_K": bk}, num_warps=warps, num_stages=stages)


def _linear_configs():
    # Kept where every config compiles without spills for sm_80 and sm_90 (scripts/triton_compile_check.py, triton
    # 3.9, the residual and GELU epilogues). Dropped, 16-bit: 128×128×64 (8 warps) spilled 48–136 B, 128×64 and
    # 64×128 (4 warps) 8–800 B, 128×256 and 256×128 more; the epilogue's 64-bit residual/output pointer tiles are
    # the pressure (advancing the operand pointers instead of rebuilding them did not help: 72–3136 B).
    by_dtype = {
        "fp32": [_gemm_tile(*t) for t in ((32, 32, 16, 4, 2), (64, 64, 16, 8, 2), (32, 64, 16, 4, 2))],
        "half": [_gemm_tile(*t) for t in ((64, 64, 64, 4, 4), (64, 32, 64, 4, 4))],
    }

    def prune(configs, named_args, **kwargs):
        return _runtime.for_dtype(configs, by_dtype, {**named_args, **kwargs}["x_ptr"].dtype)

    gpu = _runtime.unique(c for configs in by_dtype.values() for c in configs)
    interpreted = _gemm_tile(16, 32, 16, 4, 1)
    return gpu, by_dtype, _runtime.tuned_configs(by_dtype, interpreted), {"early_config_prune": prune}


GPU_LINEAR_CONFIGS, GPU_LINEAR_CONFIGS_BY_DTYPE, _LINEAR_CONFIGS, _LINEAR_PRUNE = _linear_configs()
check_dots("linear", _LINEAR_CONFIGS)


@triton.autotune(configs=_LINEAR_CONFIGS, key=["M", "N", "K", "HAS_RES"], prune_configs_by=_LINEAR_PRUNE)
@triton.jit
def _linear_kernel(x_ptr, w_ptr, bias_ptr, res_ptr, out_ptr, M, N, K, sx_m, sx_k, sw_n, sw_k, sb, sr_m, sr_n,
                   so_m, so_n, HAS_BIAS: tl.constexpr, ACT: tl.constexpr, HAS_RES: tl.constexpr,
                   PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    # Programs walk output tiles column-group by column-group (8 row tiles share a weight column tile in L2).
    pid = tl.program_id(0)
    tiles_m = tl.cdiv(M, BLOCK_M)
    tiles_n = tl.cdiv(N, BLOCK_N)
    group = 8 * tiles_n
    first_m = (pid // group) * 8
    group_rows = tl.minimum(tiles_m - first_m, 8)
    pid_m = first_m + (pid % group) % group_rows
    pid_n = (pid % group) // group_rows
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < M
    col_ok = cols < N
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc = matmul_wt(acc, x_ptr, sx_m, sx_k, rows, row_ok, w_ptr, sw_n, sw_k, cols, col_ok, K, BLOCK_K, PRECISION)
    acc = epilogue(acc, rows, cols, row_ok, col_ok, bias_ptr, sb, res_ptr, sr_m, sr_n, HAS_BIAS, ACT, HAS_RES)
    store_tile(out_ptr, acc, rows, cols, row_ok, col_ok, so_m, so_n)


def _rows(t, width):
    """t (..., width) as an (M, width) matrix (a view when the layout allows)."""
    return t.reshape(-1, width)


def linear(x, weight, bias, activation, residual):
    n, k = weight.shape
    out = _debug.new_output((*x.shape[:-1], n), x)
    if out.numel() == 0:
        return out
    x2, out2 = _rows(x, k), out.view(-1, n)
    res2 = _rows(residual, n) if residual is not None else out2  # out2 only fills the slot: never read
    bias_arg = bias if bias is not None else weight  # likewise
    m = x2.shape[0]

    def grid(meta):
        return (triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"]),)

    _linear_kernel[grid](x2, weight, bias_arg, res2, out2, m, n, k, *x2.stride(), *weight.stride(),
                         bias.stride(0) if bias is not None else 0, *res2.stride(), *out2.stride(),
                         HAS_BIAS=bias is not None, ACT=activation_code(activation), HAS_RES=residual is not None,
                         PRECISION=_runtime.dot_precision(x.dtype))
    return out


def _mlp_configs():
    by_dtype = {
        "fp32": [_gemm_tile(bm, bn, 16, w, s, BLOCK_H=bh) for bm, bn, bh, w, s in
                 ((32, 64, 16, 4, 2), (16, 64, 16, 4, 2), (32, 128, 16, 8, 2))],
        # 16-bit: 32-row tiles, output widths 64 to 512 so that every LeViT width (128 … 768) has one to three
        # output tiles. Dropped: every 64-row tile (64×64, 64×128, 64×256) spilled 8–264 B on sm_80/sm_90; the
        # 256-wide tile runs 8 warps, as the 512-wide one: on 4 warps it spilled 8 B in fp16 on sm_80 with GELU and
        # the residual (found by the full matrix, not by --quick, which compiles bf16 only for 16-bit).
        "half": [_gemm_tile(bm, bn, 64, w, s, BLOCK_H=bh) for bm, bn, bh, w, s in
                 ((32, 64, 32, 4, 3), (32, 256, 32, 8, 3), (32, 512, 32, 8, 3))],
    }
    # Interpreted: output tiles narrower than the test widths, so the recompute-per-output-tile path runs too.
    interpreted = _gemm_tile(16, 32, 16, 4, 1, BLOCK_H=16)

    def prune(configs, named_args, **kwargs):
        args = {**named_args, **kwargs}
        dtype, c_out = args["x_ptr"].dtype, args["C_OUT"]
        configs = _runtime.for_dtype(configs, by_dtype, dtype)
        if _runtime.dtype_class(dtype) == "fp32":
            # fp32 tiles are register-bound, not recompute-bound: any output tile no wider than the output.
            kept = [c for c in configs if c.kwargs["BLOCK_N"] <= _runtime.block(c_out)]
        else:
            # At most three output tiles (the hidden slices are recomputed per tile), none wider than the output.
            kept = [c for c in configs if c_out <= 3 * c.kwargs["BLOCK_N"] <= 3 * _runtime.block(c_out)]
        return kept or configs[:1]

    gpu = _runtime.unique(c for configs in by_dtype.values() for c in configs)
    return gpu, by_dtype, _runtime.tuned_configs(by_dtype, interpreted), {"early_config_prune": prune}


GPU_MLP_CONFIGS, GPU_MLP_CONFIGS_BY_DTYPE, _MLP_CONFIGS, _MLP_PRUNE = _mlp_configs()
check_dots("mlp", _MLP_CONFIGS)


@triton.autotune(configs=_MLP_CONFIGS, key=["M", "C", "HID", "C_OUT"], prune_configs_by=_MLP_PRUNE)
@triton.jit
def _mlp_kernel(x_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, out_ptr, M, C, HID, C_OUT, sx_m, sx_k, sw1_h, sw1_k, sb1,
                sw2_n, sw2_h, sb2, so_m, so_n, ACT: tl.constexpr, RESIDUAL: tl.constexpr,
                PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_H: tl.constexpr,
                BLOCK_K: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < M
    col_ok = cols < C_OUT
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for h0 in range(0, HID, BLOCK_H):
        hcols = h0 + tl.arange(0, BLOCK_H)
        h_ok = hcols < HID
        hidden = tl.zeros((BLOCK_M, BLOCK_H), dtype=tl.float32)
        hidden = matmul_wt(hidden, x_ptr, sx_m, sx_k, rows, row_ok, w1_ptr, sw1_h, sw1_k, hcols, h_ok, C,
                           BLOCK_K, PRECISION)
        hidden = epilogue(hidden, rows, hcols, row_ok, h_ok, b1_ptr, sb1, x_ptr, sx_m, sx_k, True, ACT, False)
        w2t = tl.load(w2_ptr + cols[None, :] * sw2_n + hcols[:, None] * sw2_h, mask=col_ok[None, :] & h_ok[:, None],
                      other=0.0)
        acc = tl.dot(hidden.to(x_ptr.dtype.element_ty), w2t, acc, input_precision=PRECISION)
    acc = epilogue(acc, rows, cols, row_ok, col_ok, b2_ptr, sb2, x_ptr, sx_m, sx_k, True, False, RESIDUAL)
    store_tile(out_ptr, acc, rows, cols, row_ok, col_ok, so_m, so_n)


def mlp(x, w1, b1, w2, b2, activation, residual):
    hid, c = w1.shape
    c_out = w2.shape[0]
    out = _debug.new_output((*x.shape[:-1], c_out), x)
    if out.numel() == 0:
        return out
    x2, out2 = _rows(x, c), out.view(-1, c_out)
    m = x2.shape[0]

    def grid(meta):
        return (triton.cdiv(m, meta["BLOCK_M"]), triton.cdiv(c_out, meta["BLOCK_N"]))

    _mlp_kernel[grid](x2, w1, b1, w2, b2, out2, m, c, hid, c_out, *x2.stride(), *w1.stride(), b1.stride(0),
                      *w2.stride(), b2.stride(0), *out2.stride(), ACT=activation_code(activation), RESIDUAL=residual,
                      PRECISION=_runtime.dot_precision(x.dtype))
    return out


def compile_cases():
    """For scripts/triton_compile_check.py. The GEMM sizes are runtime arguments, so a class is a set of epilogue
    flags: linear as the optimized blocks call it (bias; bias + residual; bias + GELU for EfficientFormer's and
    T2T-ViT's MLP halves), mlp with the residual and each activation the families use (Hardswish, GELU); mlp's
    configs are those its prune keeps for some LeViT output width."""
    from levit_kernels.backends.triton.compile_cases import CompileCase, mark_covered, per_dtype

    widths = sorted({blk.channels for _, blk in _levit_mlp_blocks()})
    mlp_configs = {}
    for n in widths:
        for dtype, kept in per_dtype(_MLP_PRUNE["early_config_prune"], GPU_MLP_CONFIGS, {"C_OUT": n}, "x_ptr").items():
            mlp_configs[dtype] = _runtime.unique(list(mlp_configs.get(dtype, ())) + list(kept))
    linear = [CompileCase(_linear_kernel, name, consts,
                          per_dtype(_LINEAR_PRUNE["early_config_prune"], GPU_LINEAR_CONFIGS, consts, "x_ptr"))
              for name, consts in (("bias", dict(HAS_BIAS=True, ACT=activation_code(None), HAS_RES=False)),
                                   ("bias+residual", dict(HAS_BIAS=True, ACT=activation_code(None), HAS_RES=True)),
                                   ("bias+gelu", dict(HAS_BIAS=True, ACT=activation_code("gelu"), HAS_RES=False)))]
    mlp = [CompileCase(_mlp_kernel, f"{act}+residual, C_out {'/'.join(map(str, widths))}",
                       dict(ACT=activation_code(act), RESIDUAL=True), {d: tuple(c) for d, c in mlp_configs.items()})
           for act in ("hardswish", "gelu")]
    return mark_covered(linear, ("HAS_BIAS", "HAS_RES"), ("ACT",)) + mlp


def _levit_mlp_blocks():
    from levit_kernels.backends.triton.compile_cases import levit_blocks

    return levit_blocks("mlp")
