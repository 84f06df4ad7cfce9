// NEON (AArch64 Advanced SIMD) variant of the attention kernels; compiled on aarch64 only. Register tile 6 rows × 4
// vectors (24 accumulators + 4 loads + 1 broadcast of the 32 q registers).
#if defined(__aarch64__)
#include "common/kernel_prelude.h"
#include "attention/attention_kernel.h"
#include "simd/vec_neon.h"
#include "attention/attention_impl.h"

namespace levit::attention {

const Kernels kNeonKernels = make_kernels<simd::VecNeon, 6, 4>();

}  // namespace levit::attention
#endif
