// AVX-512 variant of the direct convolution block (conv_kernel.h).
#if defined(__x86_64__) || defined(_M_X64)
#include "common/kernel_prelude.h"
#include "conv/conv.h"  // before the target pragma: its inline code stays baseline
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")
// GCC 12 false positives inside avx512fintrin.h (_mm512_undefined_ps is self-initialized on purpose).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include "simd/vec_avx512.h"
#include "conv/conv_kernel.h"

namespace levit::conv {
void direct_block_avx512(const ConvArgs& a, int64_t nr, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  direct_conv_block<simd::VecAvx512>(a, nr, m0, m1, n0, n1);
}
}  // namespace levit::conv
#pragma GCC pop_options
#endif
