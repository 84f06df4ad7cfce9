// Portable scalar variant of the flash attention kernel (baseline flags): runs anywhere, and is the reference the SIMD
// variants are checked against.
#include "common/kernel_prelude.h"
#include "flash/flash_kernel.h"
#include "simd/vec_scalar.h"
#include "flash/flash_impl.h"

namespace levit::flash {

void run_scalar(const Problem& p, const Plan& plan, int64_t begin, int64_t end, float* workspace) {
  run_items<simd::VecScalar>(p, plan, begin, end, workspace);
}

}  // namespace levit::flash
