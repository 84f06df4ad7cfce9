// NEON (AArch64 Advanced SIMD) variant of the attention kernels; compiled on aarch64 only.
#if defined(__aarch64__)
#include "common/kernel_prelude.h"
#include "attention/attention_kernel.h"
#include "simd/vec_neon.h"
#include "attention/attention_impl.h"

namespace levit::attention {

void run_neon(const Problem& p, const Plan& plan, int64_t begin, int64_t end, float* workspace) {
  run_items<simd::VecNeon>(p, plan, begin, end, workspace);
}

}  // namespace levit::attention
#endif
