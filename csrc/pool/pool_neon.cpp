// NEON (AArch64 Advanced SIMD) variant of the pooling-mixer kernel; compiled on aarch64 only.
#if defined(__aarch64__)
#include "common/kernel_prelude.h"
#include "pool/pool_kernel.h"
#include "simd/vec_neon.h"
#include "pool/pool_impl.h"

namespace levit::pool {
void run_neon(const Problem& p, const Plan& plan, int64_t begin, int64_t end, float* scratch) {
  run_items<simd::VecNeon>(p, plan, begin, end, scratch);
}
}  // namespace levit::pool
#endif
