// NEON (AArch64 Advanced SIMD) variant of the LayerNorm kernel; compiled on aarch64 only.
#if defined(__aarch64__)
#include "common/kernel_prelude.h"
#include "layernorm/layernorm_kernel.h"
#include "simd/vec_neon.h"
#include "layernorm/layernorm_impl.h"

namespace levit::layernorm {
void rows_neon(const Problem& p, int64_t row0, int64_t row1) { rows<simd::VecNeon>(p, row0, row1); }
}  // namespace levit::layernorm
#endif
