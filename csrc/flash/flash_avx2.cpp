// AVX2 + FMA variant of the flash attention kernel. Only the code after the target pragma is compiled for AVX2, and all
// of it is templated over VecAvx2 (see common/kernel_prelude.h).
#if defined(__x86_64__) || defined(_M_X64)
#include "common/kernel_prelude.h"
#include "flash/flash_kernel.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#include "simd/vec_avx2.h"
#include "flash/flash_impl.h"

namespace levit::flash {

void run_avx2(const Problem& p, const Plan& plan, int64_t begin, int64_t end, float* workspace) {
  run_items<simd::VecAvx2>(p, plan, begin, end, workspace);
}

}  // namespace levit::flash
#pragma GCC pop_options
#endif
