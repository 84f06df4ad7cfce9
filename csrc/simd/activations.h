// The epilogue activations on every lane of a Vec: hardswish, relu, gelu (see README.md for gelu's measured error),
// and apply() picking one at run time. Templates over V only, so each ISA's translation unit gets its own copy
// compiled for its target. NaN and ±inf give what torch's fp32 functions give.
#pragma once
#include "common/activation.h"
#include "common/kernel_prelude.h"
#include "simd/exp.h"

namespace levit::simd {

// x·clamp(x + 3, 0, 6)/6, as torch: NaN and -inf give NaN, +inf gives +inf.
template <class V>
inline V hardswish(V x) {
  const V gate = V::min(V::max(x + V::set1(3.0f), V::zero()), V::set1(6.0f));
  return x * gate * V::set1(1.0f / 6.0f);
}

// max(x, 0); x second so that NaN stays NaN (V::max returns its second operand when either is NaN).
template <class V>
inline V relu(V x) {
  return V::max(V::zero(), x);
}

// GELU(x) = x·Φ(x) = x·(1 + erf(x/√2))/2, written with the upper normal tail Q(a) = 1 − Φ(a) at a = |x| as
//   GELU(x) = (x + |x|)/2 − |x|·Q(|x|)      (x ≥ 0: x − x·Q(x);  x < 0: x·Q(−x), no cancellation)
// and Q(a) = t·e^(−a²/2)·P(t), t = 1/(1 + 0.3·a), P a degree-9 polynomial fitted by scripts/fit_gelu_poly.py (its
// own relative error 3.0e-8). Rounding errors that would grow are compensated: 1 + 0.3·a is carried with its
// rounding error into t (near a = 0 an error in t costs ~2.7× as much in Q), and a² is split exactly (a² = h + l,
// l = fma(a, a, −h)), so that e^(−a²/2) = e^(−h/2)·(1 − l/2) keeps its accuracy as a grows. a·t·P(t) is formed
// before the (possibly tiny) exponential, so no intermediate goes subnormal before the result does. a is clamped
// to 14 for the tail only (e^(−h/2) is 0 from a ≈ 13.25 on): +inf gives +inf, −inf gives NaN (as torch's
// x·(1 + erf)/2 = −inf·0) and NaN gives NaN.
template <class V>
inline V gelu(V x) {
  const V one = V::set1(1.0f), k = V::set1(0.3f);
  const V abs_x = V::abs(x);
  const V a = V::min(V::set1(14.0f), abs_x);  // a second: NaN stays NaN
  const V s = V::fma(a, k, one);
  const V s_err = V::fma(a, k, one - s);  // (1 + 0.3a) − s, exact while s ≤ 2 (where it matters)
  const V t0 = one / s;
  const V t = V::fma(V::zero() - s_err * t0, t0, t0);  // 1/(s + s_err) to first order
  V p = V::set1(-0x1.5611c8p-6f);
  p = V::fma(p, t, V::set1(0x1.d226c6p-4f));
  p = V::fma(p, t, V::set1(-0x1.d9e85ep-3f));
  p = V::fma(p, t, V::set1(0x1.915adcp-3f));
  p = V::fma(p, t, V::set1(-0x1.5357e2p-4f));
  p = V::fma(p, t, V::set1(0x1.9139f4p-4f));
  p = V::fma(p, t, V::set1(0x1.3e9a4cp-4f));
  p = V::fma(p, t, V::set1(0x1.c40a1ap-4f));
  p = V::fma(p, t, V::set1(0x1.e9b4dcp-4f));
  p = V::fma(p, t, V::set1(0x1.ea3d58p-4f));
  const V h = a * a;
  const V l = V::fma(a, a, V::zero() - h);
  const V e = simd::exp(h * V::set1(-0.5f));
  const V tail = a * t * p * V::fma(l * V::set1(-0.5f), e, e);  // |x|·Q(a), a = |x| where it is not 0
  const V half = V::set1(0.5f);
  return (half * x + half * abs_x) - tail;
}

// act(x); the switch is per call, so kernels call it on a whole register tile (the branch is predicted).
template <class V>
inline V apply(Activation act, V x) {
  switch (act) {
    case Activation::kHardswish: return hardswish(x);
    case Activation::kGelu: return gelu(x);
    case Activation::kRelu: return relu(x);
    default: return x;
  }
}

}  // namespace levit::simd
