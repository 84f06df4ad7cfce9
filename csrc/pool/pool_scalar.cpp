// Portable scalar variant of the pooling-mixer kernel (baseline flags): runs anywhere, and is the reference the SIMD
// variants are checked against.
#include "common/kernel_prelude.h"
#include "pool/pool_kernel.h"
#include "simd/vec_scalar.h"
#include "pool/pool_impl.h"

namespace levit::pool {
void run_scalar(const Problem& p, const Plan& plan, int64_t begin, int64_t end, float* scratch) {
  run_items<simd::VecScalar>(p, plan, begin, end, scratch);
}
}  // namespace levit::pool
