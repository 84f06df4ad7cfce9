"""Kernels for tests/test_triton_compile_check.py, registered as a kernel module would be: one that compiles for a
GPU, one the compiler rejects, and one that spills registers."""
import triton
import triton.language as tl

from levit_kernels.backends.triton.compile_cases import CompileCase


@triton.jit
def good_copy_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out_ptr + offsets, tl.load(x_ptr + offsets, mask=offsets < n), mask=offsets < n)


@triton.jit
def bad_arange_kernel(x_ptr, N: tl.constexpr):
    tl.store(x_ptr + tl.arange(0, N), 1.0)  # N = 24: not a power of two, rejected at compile time


@triton.jit
def spilling_kernel(x_ptr, out_ptr, BLOCK: tl.constexpr):
    # A BLOCK×BLOCK fp32 tile reduced along both axes in one warp: far more live values than 255 registers.
    i = tl.arange(0, BLOCK)
    tile = tl.load(x_ptr + i[:, None] * BLOCK + i[None, :])
    tile = tl.exp(tile - tl.max(tile, 0)[None, :])
    tl.store(out_ptr + i[:, None] * BLOCK + i[None, :], tile / tl.sum(tile, 1)[:, None])


def compile_cases():
    one_warp = (triton.Config({}, num_warps=1, num_stages=1),)
    return [CompileCase(good_copy_kernel, "planted good", {"BLOCK": 256}, one_warp),
            CompileCase(bad_arange_kernel, "planted compile error", {"N": 24}, one_warp),
            CompileCase(spilling_kernel, "planted spills", {"BLOCK": 128}, one_warp)]
