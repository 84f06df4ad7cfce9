// The pooling-mixer kernel as a template over a SIMD vector type V (csrc/simd). Included by the per-ISA translation
// units after their target pragma; everything is a template over V or in an unnamed namespace, so code compiled
// for one ISA never shares a symbol with another's (see common/kernel_prelude.h).
//
// Separable window sums in one pass over the map: each input row is read once into its row sums (P taps along W,
// clipped to the map) in a ring of P rows of scratch, then each output row sums the ring rows of its window
// (clipped along H), divides by the in-map count, and mixes with its centre row: x + ls·(avg − x). Per output
// element that is ~2(P − 1) adds, a multiply and an FMA per vector; the centre row is re-read from cache.
#pragma once
#include "common/kernel_prelude.h"
#include "pool/pool_kernel.h"

namespace levit::pool {
namespace {

template <class V>
inline V load_lanes(const float* p, int lanes) {
  return lanes == V::kWidth ? V::load(p) : V::load_partial(p, lanes);
}

template <class V>
inline void store_lanes(float* p, V v, int lanes) {
  if (lanes == V::kWidth)
    V::store(p, v);
  else
    V::store_partial(p, v, lanes);
}

// Window [lo, hi] of position i along an axis of n points: i ± r clipped to [0, n).
struct Window {
  int64_t lo, hi;
  Window(int64_t i, int64_t r, int64_t n) : lo(std::max<int64_t>(i - r, 0)), hi(std::min<int64_t>(i + r, n - 1)) {}
  int64_t count() const { return hi - lo + 1; }
};

// sums[w, c] = Σ x[w', c] over the window of w (x: one input row, W positions `sw` floats apart).
template <class V>
void row_sums(const Problem& p, const float* x, int64_t sw, float* sums) {
  constexpr int VW = V::kWidth;
  const int64_t C = p.channels;
  for (int64_t w = 0; w < p.width; ++w, sums += C) {
    const Window win(w, p.radius, p.width);
    const float* first = x + win.lo * sw;
    for (int64_t c = 0; c < C; c += VW) {
      const int lanes = static_cast<int>(std::min<int64_t>(VW, C - c));
      V acc = load_lanes<V>(first + c, lanes);
      for (int64_t t = 1; t < win.count(); ++t) acc = acc + load_lanes<V>(first + t * sw + c, lanes);
      store_lanes<V>(sums + c, acc, lanes);
    }
  }
}

// One output row: window sums from the ring rows rows[0..n_rows) (row sums, W×C contiguous each), `inv_rows` =
// 1 / (rows in the window), x the centre input row.
template <class V>
void mix_row(const Problem& p, const float* x, int64_t sw, const float* const* rows, int n_rows, float inv_rows,
             float* out) {
  constexpr int VW = V::kWidth;
  const int64_t C = p.channels;
  for (int64_t w = 0; w < p.width; ++w, x += sw, out += C) {
    const V scale = V::set1(inv_rows / static_cast<float>(Window(w, p.radius, p.width).count()));
    const int64_t at = w * C;
    for (int64_t c = 0; c < C; c += VW) {
      const int lanes = static_cast<int>(std::min<int64_t>(VW, C - c));
      V sum = load_lanes<V>(rows[0] + at + c, lanes);
      for (int k = 1; k < n_rows; ++k) sum = sum + load_lanes<V>(rows[k] + at + c, lanes);
      const V xv = load_lanes<V>(x + c, lanes);
      const V ls = load_lanes<V>(p.layer_scale + c, lanes);
      store_lanes<V>(out + c, V::fma(ls, sum * scale - xv, xv), lanes);
    }
  }
}

template <class V>
void run_items(const Problem& p, const Plan& plan, int64_t begin, int64_t end, float* scratch) {
  const int taps = 2 * p.radius + 1;
  const int64_t row_floats = p.width * p.channels;
  const int64_t sb = p.x_stride[0], sh = p.x_stride[1], sw = p.x_stride[2];
  const float* rows[2 * kMaxRadius + 1];  // the ring rows of one output row's window
  for (int64_t item = begin; item < end; ++item) {
    const int64_t b = item / plan.bands, h0 = item % plan.bands * plan.band_rows;
    const int64_t h1 = std::min(p.height, h0 + plan.band_rows);
    const float* xb = p.x + b * sb;
    float* ob = p.out + b * p.height * row_floats;
    int64_t next = std::max<int64_t>(h0 - p.radius, 0);  // first input row whose sums are not in the ring yet
    for (int64_t h = h0; h < h1; ++h) {
      const Window win(h, p.radius, p.height);
      for (; next <= win.hi; ++next) row_sums<V>(p, xb + next * sh, sw, scratch + next % taps * row_floats);
      int n_rows = 0;
      for (int64_t y = win.lo; y <= win.hi; ++y) rows[n_rows++] = scratch + y % taps * row_floats;
      mix_row<V>(p, xb + h * sh, sw, rows, n_rows, 1.0f / static_cast<float>(win.count()), ob + h * row_floats);
    }
  }
}

}  // namespace
}  // namespace levit::pool
