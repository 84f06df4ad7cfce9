// AVX-512 (F/DQ/BW/VL) variant of the attention kernels. Only the code after the target pragma is compiled for
// AVX-512, and all of it is templated over VecAvx512 (see common/kernel_prelude.h).
//
// Register tile 6 rows × 4 vectors (24 accumulators + 4 loads + 1 broadcast of the 32 zmm); not measured against
// other shapes (no AVX-512 machine yet).
#if defined(__x86_64__) || defined(_M_X64)
#include "common/kernel_prelude.h"
#include "attention/attention_kernel.h"

#pragma GCC push_options
// GCC 12's own _mm512_reduce_*_ps trips -Wmaybe-uninitialized inside avx512fintrin.h (a false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")
#include "simd/vec_avx512.h"
#include "attention/attention_impl.h"

namespace levit::attention {

const Kernels kAvx512Kernels = make_kernels<simd::VecAvx512, 6, 4>();

}  // namespace levit::attention
#pragma GCC pop_options
#endif
