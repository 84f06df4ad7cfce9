// AVX-512 (F/DQ/BW/VL) variant of the flash attention kernel. Only the code after the target pragma is compiled for
// AVX-512, and all of it is templated over VecAvx512 (see common/kernel_prelude.h).
#if defined(__x86_64__) || defined(_M_X64)
#include "common/kernel_prelude.h"
#include "flash/flash_kernel.h"

#pragma GCC push_options
// GCC 12's own _mm512_reduce_*_ps trips -Wmaybe-uninitialized inside avx512fintrin.h (a false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")
#include "simd/vec_avx512.h"
#include "flash/flash_impl.h"

namespace levit::flash {

void run_avx512(const Problem& p, const Plan& plan, int64_t begin, int64_t end, float* workspace) {
  run_items<simd::VecAvx512>(p, plan, begin, end, workspace);
}

}  // namespace levit::flash
#pragma GCC pop_options
#endif
