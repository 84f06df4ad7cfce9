// Portable scalar variant of the attention kernels (baseline flags): runs anywhere, and is the reference the SIMD
// variants are checked against.
#include "common/kernel_prelude.h"
#include "attention/attention_kernel.h"
#include "simd/vec_scalar.h"
#include "attention/attention_impl.h"

namespace levit::attention {

void run_scalar(const Problem& p, const Plan& plan, int64_t begin, int64_t end, float* workspace) {
  run_items<simd::VecScalar>(p, plan, begin, end, workspace);
}

}  // namespace levit::attention
