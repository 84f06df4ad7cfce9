// NEON (AArch64 Advanced SIMD) variant of the flash attention kernel; compiled on aarch64 only.
#if defined(__aarch64__)
#include "common/kernel_prelude.h"
#include "flash/flash_kernel.h"
#include "simd/vec_neon.h"
#include "flash/flash_impl.h"

namespace levit::flash {

void run_neon(const Problem& p, const Plan& plan, int64_t begin, int64_t end, float* workspace) {
  run_items<simd::VecNeon>(p, plan, begin, end, workspace);
}

}  // namespace levit::flash
#endif
