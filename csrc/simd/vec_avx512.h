// 16 fp32 lanes, AVX-512 F/DQ/BW/VL. Include only from a translation unit compiled for that target.
#pragma once
#include "common/kernel_prelude.h"

namespace levit::simd {

struct VecAvx512 {
  static constexpr int kWidth = 16;
  static constexpr int kRegisters = 32;  // architectural vector registers (sizes register tiles)
  __m512 v;

  static __mmask16 lane_mask(int n) { return static_cast<__mmask16>(n >= 16 ? 0xFFFFu : ((1u << n) - 1u)); }
  static VecAvx512 zero() { return {_mm512_setzero_ps()}; }
  static VecAvx512 set1(float x) { return {_mm512_set1_ps(x)}; }
  static VecAvx512 load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static void store(float* p, VecAvx512 a) { _mm512_storeu_ps(p, a.v); }
  static VecAvx512 load_partial(const float* p, int n) { return {_mm512_maskz_loadu_ps(lane_mask(n), p)}; }
  static void store_partial(float* p, VecAvx512 a, int n) { _mm512_mask_storeu_ps(p, lane_mask(n), a.v); }
  static VecAvx512 fma(VecAvx512 a, VecAvx512 b, VecAvx512 c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
  static VecAvx512 max(VecAvx512 a, VecAvx512 b) { return {_mm512_max_ps(a.v, b.v)}; }
  static VecAvx512 min(VecAvx512 a, VecAvx512 b) { return {_mm512_min_ps(a.v, b.v)}; }
  static VecAvx512 abs(VecAvx512 a) { return {_mm512_abs_ps(a.v)}; }
  static float reduce_add(VecAvx512 a) { return _mm512_reduce_add_ps(a.v); }
  static float reduce_max(VecAvx512 a) { return _mm512_reduce_max_ps(a.v); }
  static VecAvx512 round(VecAvx512 a) {
    return {_mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
  }
  static VecAvx512 pow2i(VecAvx512 n) {
    const __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n.v), _mm512_set1_epi32(127));
    return {_mm512_castsi512_ps(_mm512_slli_epi32(e, 23))};
  }
};

// Operators outside the class: GCC 12 does not apply `#pragma GCC target` to friend functions defined inside a
// class (their intrinsics then fail to inline with "target specific option mismatch").
inline VecAvx512 operator+(VecAvx512 a, VecAvx512 b) { return {_mm512_add_ps(a.v, b.v)}; }
inline VecAvx512 operator-(VecAvx512 a, VecAvx512 b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline VecAvx512 operator*(VecAvx512 a, VecAvx512 b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline VecAvx512 operator/(VecAvx512 a, VecAvx512 b) { return {_mm512_div_ps(a.v, b.v)}; }

}  // namespace levit::simd
