// Portable scalar variant of the LayerNorm kernel (baseline flags): runs anywhere, and is the reference the SIMD
// variants are checked against.
#include "common/kernel_prelude.h"
#include "layernorm/layernorm_kernel.h"
#include "simd/vec_scalar.h"
#include "layernorm/layernorm_impl.h"

namespace levit::layernorm {
void rows_scalar(const Problem& p, int64_t row0, int64_t row1) { rows<simd::VecScalar>(p, row0, row1); }
}  // namespace levit::layernorm
