// The LayerNorm kernel as a template over a SIMD vector type V (csrc/simd). Included by the per-ISA translation
// units after their target pragma; everything is a template over V or in an unnamed namespace, so code compiled
// for one ISA never shares a symbol with another's (see common/kernel_prelude.h).
//
// One row at a time, three sweeps over a row that stays in L1 (768 floats = 3 KiB): the sum, then the deviations
// d = x − mean₀ from that first mean (Σd and Σd²: the corrected two-pass algorithm, mean = mean₀ + Σd/C and
// var = (Σd² − (Σd)²/C)/C; exact where the mean is large against the spread, where the one-pass E[x²] − mean²
// cancels and mean₀ alone carries the fp32 rounding of a sum of large values), then the normalised output. Only
// the first sweep reads memory beyond L1.
#pragma once
#include "common/kernel_prelude.h"
#include "layernorm/layernorm_kernel.h"
#include "simd/lanes.h"

namespace levit::layernorm {
namespace {

// Four independent accumulators hide the add latency (3-4 cycles on Zen 3 and recent Intel cores, 2 per cycle).
constexpr int kAccumulators = 4;

// Σ x[c] − shift and (kSquares) Σ (x[c] − shift)² over the C floats of x. The last C mod W floats are added one
// at a time (a zero-filled partial vector would count the missing lanes as −shift).
template <class V, bool kSquares>
inline void deviation_sums(const float* x, int64_t n, float shift, float* sum, float* squares) {
  constexpr int W = V::kWidth;
  const V s = V::set1(shift);
  V acc[kAccumulators], sq[kAccumulators];
  for (int i = 0; i < kAccumulators; ++i) acc[i] = V::zero(), sq[i] = V::zero();
  int64_t c = 0;
  for (; c + kAccumulators * W <= n; c += kAccumulators * W)
    for (int i = 0; i < kAccumulators; ++i) {
      const V d = V::load(x + c + i * W) - s;
      acc[i] = acc[i] + d;
      if constexpr (kSquares) sq[i] = V::fma(d, d, sq[i]);
    }
  for (; c + W <= n; c += W) {
    const V d = V::load(x + c) - s;
    acc[0] = acc[0] + d;
    if constexpr (kSquares) sq[0] = V::fma(d, d, sq[0]);
  }
  *sum = V::reduce_add((acc[0] + acc[1]) + (acc[2] + acc[3]));
  *squares = kSquares ? V::reduce_add((sq[0] + sq[1]) + (sq[2] + sq[3])) : 0.0f;
  for (; c < n; ++c) {
    const float d = x[c] - shift;
    *sum += d;
    if constexpr (kSquares) *squares += d * d;
  }
}

using simd::load_lanes;
using simd::store_lanes;

// One vector of (x − mean)·rstd [·weight] [+ bias] at channel c (weight / bias are only offset when present: null
// otherwise).
template <class V, bool kFull, bool kWeight, bool kBias>
inline void normalise_vec(const Problem& p, const float* x, int64_t c, V mean, V rstd, float* out, int lanes) {
  V y = (load_lanes<V, kFull>(x + c, lanes) - mean) * rstd;
  if constexpr (kWeight) y = y * load_lanes<V, kFull>(p.weight + c, lanes);
  if constexpr (kBias) y = y + load_lanes<V, kFull>(p.bias + c, lanes);
  store_lanes<V, kFull>(out + c, y, lanes);
}

// The affine's presence is a template argument: no per-vector test of it in the loop.
template <class V, bool kWeight, bool kBias>
inline void normalise(const Problem& p, const float* x, float* out, float mean, float rstd) {
  constexpr int W = V::kWidth;
  const int64_t n = p.channels;
  const V vmean = V::set1(mean), vrstd = V::set1(rstd);
  int64_t c = 0;
  for (; c + W <= n; c += W) normalise_vec<V, true, kWeight, kBias>(p, x, c, vmean, vrstd, out, W);
  if (c < n) normalise_vec<V, false, kWeight, kBias>(p, x, c, vmean, vrstd, out, static_cast<int>(n - c));
}

template <class V>
void rows(const Problem& p, int64_t row0, int64_t row1) {
  const int64_t n = p.channels;
  const float inv_n = 1.0f / static_cast<float>(n);
  for (int64_t r = row0; r < row1; ++r) {
    const float* x = p.x + r * p.ldx;
    float sum, squares;
    deviation_sums<V, false>(x, n, 0.0f, &sum, &squares);
    const float first_mean = sum * inv_n;
    deviation_sums<V, true>(x, n, first_mean, &sum, &squares);
    const float mean = first_mean + sum * inv_n;
    const float var = std::max((squares - sum * sum * inv_n) * inv_n, 0.0f);
    const float rstd = 1.0f / std::sqrt(var + p.eps);
    float* out = p.out + r * p.ldo;
    if (p.weight != nullptr && p.bias != nullptr)
      normalise<V, true, true>(p, x, out, mean, rstd);
    else if (p.weight != nullptr)
      normalise<V, true, false>(p, x, out, mean, rstd);
    else if (p.bias != nullptr)
      normalise<V, false, true>(p, x, out, mean, rstd);
    else
      normalise<V, false, false>(p, x, out, mean, rstd);
  }
}

}  // namespace
}  // namespace levit::layernorm
