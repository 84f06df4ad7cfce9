// One-lane "vector": the portable variant, and the reference the SIMD variants are checked against.
#pragma once
#include "common/kernel_prelude.h"

namespace levit::simd {

struct VecScalar {
  static constexpr int kWidth = 1;
  static constexpr int kRegisters = 16;  // architectural FP registers (sizes register tiles)
  float v;

  static VecScalar zero() { return {0.0f}; }
  static VecScalar set1(float x) { return {x}; }
  static VecScalar load(const float* p) { return {*p}; }
  static void store(float* p, VecScalar a) { *p = a.v; }
  static VecScalar load_partial(const float* p, int n) { return {n > 0 ? *p : 0.0f}; }
  static void store_partial(float* p, VecScalar a, int n) {
    if (n > 0) *p = a.v;
  }
  friend VecScalar operator+(VecScalar a, VecScalar b) { return {a.v + b.v}; }
  friend VecScalar operator-(VecScalar a, VecScalar b) { return {a.v - b.v}; }
  friend VecScalar operator*(VecScalar a, VecScalar b) { return {a.v * b.v}; }
  friend VecScalar operator/(VecScalar a, VecScalar b) { return {a.v / b.v}; }
  static VecScalar fma(VecScalar a, VecScalar b, VecScalar c) { return {std::fma(a.v, b.v, c.v)}; }
  static VecScalar max(VecScalar a, VecScalar b) { return {a.v > b.v ? a.v : b.v}; }
  static VecScalar min(VecScalar a, VecScalar b) { return {a.v < b.v ? a.v : b.v}; }
  static VecScalar abs(VecScalar a) { return {std::fabs(a.v)}; }
  static float reduce_add(VecScalar a) { return a.v; }
  static float reduce_max(VecScalar a) { return a.v; }
  static VecScalar round(VecScalar a) { return {std::nearbyint(a.v)}; }
  static VecScalar pow2i(VecScalar n) {
    const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n.v) + 127) << 23;
    float out;
    std::memcpy(&out, &bits, sizeof out);
    return {out};
  }
};

}  // namespace levit::simd
