// e^x on every lane of a Vec (see README.md for the measured error). Template over V only, so each ISA's
// translation unit gets its own copy compiled for its target.
#pragma once
#include "common/kernel_prelude.h"

namespace levit::simd {

// x = n·ln2 + r with |r| ≤ ln2/2, e^r from a degree-6 polynomial (coefficients: scripts/fit_exp_poly.py), times
// 2^n. Results below 2^-126 are not kept as exact subnormals (they would cost a slow microcoded multiply): x below
// ~-87.68 gives exactly 0, so exp(-inf) = 0; between -87.68 and -87.34 the result is a (correctly rounded)
// subnormal. Inputs above ~88.72 give +inf, NaN gives NaN.
// x − n·ln2, ln2 split in two so that n·ln2_hi is exact for |n| ≤ 2^15.
template <class V>
inline V ln2_remainder(V x, V n) {
  return V::fma(n, V::set1(2.12194440e-4f), V::fma(n, V::set1(-0.693359375f), x));
}

// e^r for |r| ≤ ln2/2: the degree-6 polynomial (scripts/fit_exp_poly.py) of exp() and of GELU's tail factor
// (activations.h, exp_split_nonpositive).
template <class V>
inline V exp_reduced(V r) {
  V q = V::set1(0x1.687c22p-10f);
  q = V::fma(q, r, V::set1(0x1.123b8ep-7f));
  q = V::fma(q, r, V::set1(0x1.555b58p-5f));
  q = V::fma(q, r, V::set1(0x1.55548ep-3f));
  q = V::fma(q, r, V::set1(0x1.fffff8p-2f));
  return V::fma(q, r * r, r) + V::set1(1.0f);
}

template <class V>
inline V exp(V x) {
  // V::min/max return their second operand when either is NaN: putting x second keeps a NaN input NaN.
  x = V::max(V::set1(-88.0f), V::min(V::set1(88.8f), x));
  const V n = V::round(x * V::set1(1.44269504088896341f));  // in [-127, 128]
  const V p = exp_reduced(ln2_remainder(x, n));
  // 2^n: pow2i(-127) is +0 (a zero exponent field), the flush above. n = 128 is applied as 2^127·2 so that results
  // between 2^127·p and FLT_MAX stay finite. A NaN n becomes 127 here (p is NaN anyway): pow2i stays defined.
  const V n1 = V::min(n, V::set1(127.0f));
  return p * V::pow2i(n1) * (n - n1 + V::set1(1.0f));
}

// 2^x for x ≤ 0 (or NaN): softmax weights in the base-2 domain, once the running maximum is subtracted. Half the
// work of exp() (no upper range, no ln2 reduction, degree 5): x = n + r with |r| ≤ 1/2, 2^r from a degree-5
// polynomial (scripts/fit_exp_poly.py --exp2; its own error 1.0e-7), times 2^n. x below -126.5 gives exactly 0
// (so 2^-inf = 0: masked keys weigh nothing), NaN gives NaN.
template <class V>
inline V exp2_nonpositive(V x) {
  x = V::max(V::set1(-127.0f), x);  // NaN stays NaN: max returns its second operand when either is NaN
  // n from a NaN-free copy (NaN → -127): converting NaN to int is undefined behaviour in C++ (the scalar pow2i;
  // UBSan caught it). r, and so the result, stay NaN through x.
  const V n = V::round(V::max(x, V::set1(-127.0f)));  // in [-127, 0]
  const V r = x - n;
  V p = V::set1(0x1.5a8502p-10f);
  p = V::fma(p, r, V::set1(0x1.3cec16p-7f));
  p = V::fma(p, r, V::set1(0x1.c6baaap-5f));
  p = V::fma(p, r, V::set1(0x1.ebf9b6p-3f));
  p = V::fma(p, r, V::set1(0x1.62e426p-1f));
  p = V::fma(p, r, V::set1(1.0f));
  return p * V::pow2i(n);  // pow2i(-127) is +0
}

}  // namespace levit::simd
