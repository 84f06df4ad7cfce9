// Torch-free interface of the LayerNorm kernel: the problem as raw pointers and row strides, and one entry point
// per ISA variant. Shared by the op wrapper (layernorm_op.cpp) and the standalone test (csrc/tests).
//
//   out[r, c] = (x[r, c] − mean_r) / sqrt(var_r + eps) · weight[c] + bias[c]   (biased variance over the C columns)
//
// Per-ISA translation units include this header *before* their `#pragma GCC target`, so nothing declared here is
// compiled for an AVX target.
#pragma once
#include <cstdint>

#include "common/isa_select.h"

namespace levit::layernorm {

struct Problem {
  const float* x = nullptr;  // rows of C floats, unit stride along C
  int64_t ldx = 0;           // floats between consecutive rows of x
  float* out = nullptr;      // rows of C floats
  int64_t ldo = 0;
  const float* weight = nullptr;  // (C,) contiguous, or null (1)
  const float* bias = nullptr;    // (C,) contiguous, or null (0)
  int64_t channels = 0;           // C >= 1
  float eps = 1e-5f;
};

// Normalises rows [row0, row1). Every variant computes the same thing; the scalar one is the reference of the others.
using RowsFn = void (*)(const Problem& p, int64_t row0, int64_t row1);
void rows_scalar(const Problem& p, int64_t row0, int64_t row1);
#if defined(__x86_64__) || defined(_M_X64)
void rows_avx2(const Problem& p, int64_t row0, int64_t row1);
void rows_avx512(const Problem& p, int64_t row0, int64_t row1);
#endif
#if defined(__aarch64__)
void rows_neon(const Problem& p, int64_t row0, int64_t row1);
#endif

// The variant of `isa`; throws std::invalid_argument when this build has none (x86 ones on x86-64 only, NEON on
// AArch64 only).
inline RowsFn kernel_for(Isa isa) {
  return select_variant<RowsFn>(isa, "layer_norm", rows_scalar, LEVIT_IF_X86(rows_avx2), LEVIT_IF_X86(rows_avx512),
                                LEVIT_IF_AARCH64(rows_neon));
}

}  // namespace levit::layernorm
