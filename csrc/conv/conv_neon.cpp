// NEON variant of the direct convolution block (conv_kernel.h); compiled on aarch64 only.
#if defined(__aarch64__)
#include "common/kernel_prelude.h"
#include "conv/conv.h"
#include "simd/vec_neon.h"
#include "conv/conv_kernel.h"

namespace levit::conv {
void direct_block_neon(const ConvArgs& a, int64_t nr, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  direct_conv_block<simd::VecNeon>(a, nr, m0, m1, n0, n1);
}
}  // namespace levit::conv
#endif
