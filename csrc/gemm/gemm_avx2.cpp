// AVX2 + FMA GEMM kernels: 6 × 16 register tile (12 ymm accumulators + 2 panel loads + 1 broadcast of 16 ymm).
#if defined(__x86_64__) || defined(_M_X64)
#include "common/kernel_prelude.h"
#include "gemm/gemm.h"  // before the target pragma: its inline code stays baseline
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#include "simd/vec_avx2.h"
#include "gemm/gemm_kernel.h"

namespace levit::gemm {
const Kernels kAvx2Kernels = make_kernels<simd::VecAvx2, 6, 2, 2048>();
}
#pragma GCC pop_options
#endif
