// simd::exp over an array, one entry point per ISA variant (csrc/tests/simd_exp_<isa>.cpp), for exp_test.
#pragma once
#include <cstddef>

#include "common/isa.h"

namespace levit::test {

void exp_scalar(const float* x, float* y, size_t n);
#if defined(__x86_64__) || defined(_M_X64)
void exp_avx2(const float* x, float* y, size_t n);
void exp_avx512(const float* x, float* y, size_t n);
#endif
#if defined(__aarch64__)
void exp_neon(const float* x, float* y, size_t n);
#endif

// y[i] = simd::exp(x[i]) with the variant `isa` (which must be runnable here).
inline void exp_array(Isa isa, const float* x, float* y, size_t n) {
  switch (isa) {
#if defined(__x86_64__) || defined(_M_X64)
    case Isa::kAvx2: return exp_avx2(x, y, n);
    case Isa::kAvx512: return exp_avx512(x, y, n);
#endif
#if defined(__aarch64__)
    case Isa::kNeon: return exp_neon(x, y, n);
#endif
    default: return exp_scalar(x, y, n);
  }
}

}  // namespace levit::test

// Body of every simd_exp_<isa>.cpp: whole vectors, then the rest through a partial load/store.
#define LEVIT_TEST_DEFINE_EXP_ARRAY(name, Vec)                                     \
  namespace levit::test {                                                          \
  void name(const float* x, float* y, size_t n) {                                  \
    size_t i = 0;                                                                  \
    for (; i + Vec::kWidth <= n; i += Vec::kWidth) Vec::store(y + i, simd::exp(Vec::load(x + i))); \
    if (i < n) {                                                                   \
      const int rest = static_cast<int>(n - i);                                    \
      Vec::store_partial(y + i, simd::exp(Vec::load_partial(x + i, rest)), rest);  \
    }                                                                              \
  }                                                                                \
  }
