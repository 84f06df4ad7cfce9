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

// e^(hi + lo) for hi in [-87.79, 0] (or NaN) and |lo| ≤ ulp(hi)/2: GELU's normal-tail factor e^(−a²/2), with a²/2
// split exactly into hi + lo. exp()'s reduction (x = n·ln2 + r, the same degree-6 polynomial) without what this
// range never needs: no upper clamp and no 2^128 split, and lo enters r, where it is exact, instead of costing a
// correction multiply on the result. hi < -87.68 gives n = -127 and so exactly 0 (pow2i(-127) is +0), as exp().
// n comes from a NaN-free copy (NaN → -127): converting NaN to int is undefined behaviour in the scalar pow2i.
// The reduction and polynomial are exp()'s (exp.h: ln2_remainder, exp_reduced); calling exp() itself and correcting
// by (1 + lo) measured 3.31 ns/element against 2.86 for this.
template <class V>
inline V exp_split_nonpositive(V hi, V lo) {
  const V n = V::round(V::max(hi * V::set1(1.44269504088896341f), V::set1(-127.0f)));
  const V p = exp_reduced(ln2_remainder(hi, n) + lo);
  return p * V::pow2i(n);
}

// GELU(x) = x·Φ(x) = x·(1 + erf(x/√2))/2, written with the upper normal tail Q(a) = 1 − Φ(a) at a = |x| as
//   GELU(x) = (x + |x|)/2 − |x|·Q(|x|)      (x ≥ 0: x − x·Q(x);  x < 0: x·Q(−x), no cancellation)
// and Q(a) = t·e^(−a²/2)·P(t), t = 1/(1 + 0.3·a), P a degree-9 polynomial fitted by scripts/fit_gelu_poly.py (its
// own relative error 3.0e-8). Rounding errors that would grow are compensated: 1 + 0.3·a is carried with its
// rounding error into t (near a = 0 an error in t costs ~2.7× as much in Q), and −a²/2 is split exactly
// (hi = (−a/2)·a rounded, lo = fma(−a/2, a, −hi)), so that e^(hi + lo) keeps its accuracy as a grows. a·t·P(t) is
// formed before the (possibly tiny) exponential, so no intermediate goes subnormal before the result does. a is
// clamped to 13.25 for the tail only (e^(−a²/2) is 0 from a ≈ 13.243 on): +inf gives +inf, −inf gives NaN (as
// torch's x·(1 + erf)/2 = −inf·0) and NaN gives NaN.
// Cost: the multiply/FMA pipes bound it (AMD EPYC, AVX2: ~0.6 ns per ymm multiply or FMA next to loads and
// stores; interleaving 2-4 vectors per step measured slower, so it is not latency-bound), hence written for few of
// them: 30 per vector (exp_split_nonpositive, the split −a²/2, one fma for (x + |x|)/2), from 34 in exp() + a
// correction multiply: 3.24 → 2.86 ns per element over an L1-resident array, 1 thread.
template <class V>
inline V gelu(V x) {
  const V one = V::set1(1.0f), k = V::set1(0.3f);
  const V abs_x = V::abs(x);
  const V a = V::min(V::set1(13.25f), abs_x);  // a second: NaN stays NaN
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
  const V half = V::set1(0.5f);
  const V minus_half_a = a * V::set1(-0.5f);  // exact
  const V hi = minus_half_a * a;
  const V lo = V::fma(minus_half_a, a, V::zero() - hi);
  const V tail = a * t * p * exp_split_nonpositive(hi, lo);  // |x|·Q(a), a = |x| where it is not 0
  return V::fma(half, x, half * abs_x) - tail;  // (x + |x|)/2 exactly (0 or x), without overflowing x + |x|
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
