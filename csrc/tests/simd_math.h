// The shared SIMD math (simd/exp.h, simd/activations.h) over arrays, one entry point per ISA variant
// (csrc/tests/simd_math_<isa>.cpp), for exp_test and activations_test.
#pragma once
#include <cstddef>

#include "common/activation.h"  // before the ISA target pragmas of simd_math_<isa>.cpp: its inline code stays baseline
#include "common/isa.h"

namespace levit::test {

enum class MathFn : int { kExp, kHardswish, kGelu, kRelu };

void math_scalar(MathFn fn, const float* x, float* y, size_t n);
#if defined(__x86_64__) || defined(_M_X64)
void math_avx2(MathFn fn, const float* x, float* y, size_t n);
void math_avx512(MathFn fn, const float* x, float* y, size_t n);
#endif
#if defined(__aarch64__)
void math_neon(MathFn fn, const float* x, float* y, size_t n);
#endif

// y[i] = fn(x[i]) with the variant `isa` (which must be runnable here).
inline void math_array(Isa isa, MathFn fn, const float* x, float* y, size_t n) {
  switch (isa) {
#if defined(__x86_64__) || defined(_M_X64)
    case Isa::kAvx2: return math_avx2(fn, x, y, n);
    case Isa::kAvx512: return math_avx512(fn, x, y, n);
#endif
#if defined(__aarch64__)
    case Isa::kNeon: return math_neon(fn, x, y, n);
#endif
    default: return math_scalar(fn, x, y, n);
  }
}

}  // namespace levit::test

// Body of every simd_math_<isa>.cpp (after its target pragma, so that everything here is compiled for it): whole
// vectors of x through the function, then the rest through a partial load/store.
#define LEVIT_TEST_DEFINE_MATH_ARRAY(name, Vec)                                                 \
  namespace levit::test {                                                                       \
  namespace {                                                                                   \
  template <class F>                                                                            \
  void map_array(F f, const float* x, float* y, size_t n) {                                     \
    size_t i = 0;                                                                               \
    for (; i + Vec::kWidth <= n; i += Vec::kWidth) Vec::store(y + i, f(Vec::load(x + i)));      \
    if (i < n) {                                                                                \
      const int rest = static_cast<int>(n - i);                                                 \
      Vec::store_partial(y + i, f(Vec::load_partial(x + i, rest)), rest);                       \
    }                                                                                           \
  }                                                                                             \
  }                                                                                             \
  void name(MathFn fn, const float* x, float* y, size_t n) {                                    \
    switch (fn) {                                                                               \
      case MathFn::kExp: return map_array([](Vec v) { return simd::exp(v); }, x, y, n);         \
      case MathFn::kHardswish: return map_array([](Vec v) { return simd::hardswish(v); }, x, y, n); \
      case MathFn::kGelu: return map_array([](Vec v) { return simd::gelu(v); }, x, y, n);       \
      case MathFn::kRelu: return map_array([](Vec v) { return simd::relu(v); }, x, y, n);       \
    }                                                                                           \
  }                                                                                             \
  }
