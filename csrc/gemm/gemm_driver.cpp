// ISA-independent parts of the GEMM: weight packing, kernel-table lookup and the MLP's two-GEMM token tile.
// Compiled for the baseline instruction set; the SIMD work happens in the per-ISA kernel tables.
#include "gemm/gemm.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace levit::gemm {

int64_t packed_floats(int64_t n, int64_t k, int nr) { return (n + nr - 1) / nr * nr * k; }

void pack_weight(const float* w, int64_t stride_n, int64_t stride_k, int64_t n, int64_t k, int nr, float* packed) {
  for (int64_t p0 = 0; p0 < n; p0 += nr) {
    const int64_t cols = std::min<int64_t>(nr, n - p0);
    for (int64_t kk = 0; kk < k; ++kk, packed += nr) {
      const float* src = w + p0 * stride_n + kk * stride_k;
      for (int64_t j = 0; j < cols; ++j) packed[j] = src[j * stride_n];
      std::fill(packed + cols, packed + nr, 0.0f);
    }
  }
}

const Kernels& kernels_for(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return kScalarKernels;
#if defined(__x86_64__) || defined(_M_X64)
    case Isa::kAvx2: return kAvx2Kernels;
    case Isa::kAvx512: return kAvx512Kernels;
#endif
#if defined(__aarch64__)
    case Isa::kNeon: return kNeonKernels;
#endif
    default: throw std::invalid_argument(std::string("no GEMM kernels for ISA '") + isa_name(isa) + "' in this build");
  }
}

int64_t mlp_tile_rows(const Geometry& g, int64_t hidden) {
  constexpr int64_t kHiddenTileFloats = 48 * 1024;  // 192 KiB: L2-resident next to the x rows and weight panels
  const int64_t rows = kHiddenTileFloats / std::max<int64_t>(hidden, 1) / g.mr * g.mr;
  return std::clamp<int64_t>(rows, g.mr, 16 * g.mr);
}

void mlp_block(const Kernels& kernels, const MlpArgs& a, int64_t m0, int64_t m1, float* scratch) {
  const int64_t rows = m1 - m0;
  const float* x = a.x + m0 * a.ldx;
  const LinearArgs up{x, a.ldx, a.packed1, a.b1, nullptr, 0, scratch, a.hidden, a.c, a.hidden, a.act};
  kernels.linear_block(up, 0, rows, 0, a.hidden);
  const LinearArgs down{scratch, a.hidden, a.packed2, a.b2, a.residual ? x : nullptr, a.ldx,
                        a.out + m0 * a.ldo, a.ldo, a.hidden, a.c_out, Activation::kNone};
  kernels.linear_block(down, 0, rows, 0, a.c_out);
}

}  // namespace levit::gemm
