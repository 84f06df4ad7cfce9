// AVX-512 GEMM kernels: 12 × 32 register tile (24 zmm accumulators + 2 panel loads + 1 broadcast of 32 zmm).
#if defined(__x86_64__) || defined(_M_X64)
#include "common/kernel_prelude.h"
#include "gemm/gemm.h"  // before the target pragma: its inline code stays baseline
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")
// GCC 12 false positive inside avx512fintrin.h (_mm512_undefined_ps is self-initialized on purpose).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "simd/vec_avx512.h"
#include "gemm/gemm_kernel.h"

namespace levit::gemm {
const Kernels kAvx512Kernels = make_kernels<simd::VecAvx512, 12, 2, 2048>();
}
#pragma GCC pop_options
#endif
