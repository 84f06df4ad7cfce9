// 4 fp32 lanes, AArch64 Advanced SIMD.
#pragma once
#include "common/kernel_prelude.h"

namespace levit::simd {

struct VecNeon {
  static constexpr int kWidth = 4;
  static constexpr int kRegisters = 32;  // architectural vector registers (sizes register tiles)
  float32x4_t v;

  static VecNeon zero() { return {vdupq_n_f32(0.0f)}; }
  static VecNeon set1(float x) { return {vdupq_n_f32(x)}; }
  static VecNeon load(const float* p) { return {vld1q_f32(p)}; }
  static void store(float* p, VecNeon a) { vst1q_f32(p, a.v); }
  static VecNeon load_partial(const float* p, int n) {  // NEON has no masked load: go through a stack buffer
    float buf[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int i = 0; i < n && i < 4; ++i) buf[i] = p[i];
    return {vld1q_f32(buf)};
  }
  static void store_partial(float* p, VecNeon a, int n) {
    float buf[4];
    vst1q_f32(buf, a.v);
    for (int i = 0; i < n && i < 4; ++i) p[i] = buf[i];
  }
  friend VecNeon operator+(VecNeon a, VecNeon b) { return {vaddq_f32(a.v, b.v)}; }
  friend VecNeon operator-(VecNeon a, VecNeon b) { return {vsubq_f32(a.v, b.v)}; }
  friend VecNeon operator*(VecNeon a, VecNeon b) { return {vmulq_f32(a.v, b.v)}; }
  friend VecNeon operator/(VecNeon a, VecNeon b) { return {vdivq_f32(a.v, b.v)}; }
  static VecNeon fma(VecNeon a, VecNeon b, VecNeon c) { return {vfmaq_f32(c.v, a.v, b.v)}; }
  // x86 semantics (NaN in either operand gives b), so the kernels behave the same on every ISA.
  static VecNeon max(VecNeon a, VecNeon b) { return {vbslq_f32(vcgtq_f32(a.v, b.v), a.v, b.v)}; }
  static VecNeon min(VecNeon a, VecNeon b) { return {vbslq_f32(vcltq_f32(a.v, b.v), a.v, b.v)}; }
  static VecNeon abs(VecNeon a) { return {vabsq_f32(a.v)}; }
  static float reduce_add(VecNeon a) { return vaddvq_f32(a.v); }
  static float reduce_max(VecNeon a) { return vmaxvq_f32(a.v); }
  static VecNeon round(VecNeon a) { return {vrndnq_f32(a.v)}; }
  static VecNeon pow2i(VecNeon n) {
    const int32x4_t e = vaddq_s32(vcvtq_s32_f32(n.v), vdupq_n_s32(127));
    return {vreinterpretq_f32_s32(vshlq_n_s32(e, 23))};
  }
};

}  // namespace levit::simd
