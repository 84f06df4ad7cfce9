// NEON GEMM kernels: 8 × 12 register tile (24 q-register accumulators + 3 panel loads + 1 broadcast of 32).
#if defined(__aarch64__)
#include "common/kernel_prelude.h"
#include "simd/vec_neon.h"
#include "gemm/gemm_kernel.h"

namespace levit::gemm {
const Kernels kNeonKernels = make_kernels<simd::VecNeon, 8, 3, 2048>();
}
#endif
