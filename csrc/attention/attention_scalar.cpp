// Portable scalar variant of the attention kernels (baseline flags): runs anywhere, and is the reference the SIMD
// variants are checked against. Register tile 4 rows × 3 one-float "vectors".
#include "common/kernel_prelude.h"
#include "attention/attention_kernel.h"
#include "simd/vec_scalar.h"
#include "attention/attention_impl.h"

namespace levit::attention {

const Kernels kScalarKernels = make_kernels<simd::VecScalar, 4, 3>();

}  // namespace levit::attention
