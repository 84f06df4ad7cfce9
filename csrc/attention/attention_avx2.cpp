// AVX2 + FMA variant of the attention kernels. Only the code after the target pragma is compiled for AVX2, and all
// of it is templated over VecAvx2 (see common/kernel_prelude.h).
//
// Register tile 4 rows × 2 vectors (8 accumulators + 2 loads + 1 broadcast of the 16 ymm). Measured on AMD EPYC
// (1 thread, everything in L1), 4 × 2 against the 4 × 3 it replaced: q·kᵀ at D = 16 over
// 208 keys 35.1 vs 30.3 GFLOP/s, p·v over 196 keys at Dv = 32 39.1 vs 32.1 (4 × 3 leaves an 8-wide tail block
// there) and at Dv = 64 39.0 vs 33.6; 6 × 2, 3 × 4 and 2 × 4 measured in between.
#if defined(__x86_64__) || defined(_M_X64)
#include "common/kernel_prelude.h"
#include "attention/attention_kernel.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#include "simd/vec_avx2.h"
#include "attention/attention_impl.h"

namespace levit::attention {

const Kernels kAvx2Kernels = make_kernels<simd::VecAvx2, 4, 2>();

}  // namespace levit::attention
#pragma GCC pop_options
#endif
