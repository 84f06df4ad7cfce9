// AVX2 + FMA variant of the LayerNorm kernel. Only the code after the target pragma is compiled for AVX2, and all of
// it is templated over VecAvx2 (see common/kernel_prelude.h).
#if defined(__x86_64__) || defined(_M_X64)
#include "common/kernel_prelude.h"
#include "layernorm/layernorm_kernel.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#include "simd/vec_avx2.h"
#include "layernorm/layernorm_impl.h"

namespace levit::layernorm {
void rows_avx2(const Problem& p, int64_t row0, int64_t row1) { rows<simd::VecAvx2>(p, row0, row1); }
}  // namespace levit::layernorm
#pragma GCC pop_options
#endif
