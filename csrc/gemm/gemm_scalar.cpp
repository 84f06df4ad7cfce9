// Portable GEMM kernels (baseline instruction set): 4 × 4 tile of scalar accumulators.
#include "common/kernel_prelude.h"
#include "simd/vec_scalar.h"
#include "gemm/gemm_kernel.h"

namespace levit::gemm {
const Kernels kScalarKernels = make_kernels<simd::VecScalar, 4, 4, 2048>();
}
