// The pooling-mixer kernel as a template over a SIMD vector type V (csrc/simd). Included by the per-ISA translation
// units after their target pragma; everything is a template over V or in an unnamed namespace, so code compiled
// for one ISA never shares a symbol with another's (see common/kernel_prelude.h).
//
// One pass over the map, window sums separable (along W, then along H), divided by the in-map count of the window
// (count_include_pad=False), mixed with the centre: x + ls·(avg − x). Two paths:
// - 3×3 (EfficientFormer's pool_size): column sums of the 2-3 input rows slid along W in registers, no scratch;
// - any other window: each input row's sums along W (clipped to the map) go once into a ring of P rows of scratch,
//   and each output row sums the ring rows of its window (clipped along H).
// Every ISA runs the same order of operations (FMA included).
#pragma once
#include "common/kernel_prelude.h"
#include "pool/pool_kernel.h"
#include "simd/lanes.h"

namespace levit::pool {
namespace {

using simd::load_lanes;
using simd::store_lanes;

// Window [lo, hi] of position i along an axis of n points: i ± r clipped to [0, n).
struct Window {
  int64_t lo, hi;
  Window(int64_t i, int64_t r, int64_t n) : lo(std::max<int64_t>(i - r, 0)), hi(std::min<int64_t>(i + r, n - 1)) {}
  int count() const { return static_cast<int>(hi - lo + 1); }
};

// ---- any window: separable sums through a ring of row sums ----------------------------------------------------

// sums[c] = Σ first[t·sw + c] over t < taps, for one vector of the C channels of a position.
template <class V, bool kFull>
inline void tap_sums(const float* first, int64_t sw, int taps, float* sums, int lanes) {
  V acc = load_lanes<V, kFull>(first, lanes);
  for (int t = 1; t < taps; ++t) acc = acc + load_lanes<V, kFull>(first + t * sw, lanes);
  store_lanes<V, kFull>(sums, acc, lanes);
}

// sums[w, c] = Σ x[w', c] over the window of w (x: one input row, W positions `sw` floats apart).
template <class V>
void row_sums(const Problem& p, const float* x, int64_t sw, float* sums) {
  constexpr int VW = V::kWidth;
  const int64_t C = p.channels;
  for (int64_t w = 0; w < p.width; ++w, sums += C) {
    const Window win(w, p.radius, p.width);
    const float* first = x + win.lo * sw;
    int64_t c = 0;
    for (; c + VW <= C; c += VW) tap_sums<V, true>(first + c, sw, win.count(), sums + c, VW);
    if (c < C) tap_sums<V, false>(first + c, sw, win.count(), sums + c, static_cast<int>(C - c));
  }
}

// out = x + ls·(Σ ring rows · scale − x) for one vector at channel offset `at` of the position.
template <class V, bool kFull>
inline void mix_vec(const float* const* rows, int n_rows, int64_t at, const float* x, const float* ls, V scale,
                    float* out, int lanes) {
  V sum = load_lanes<V, kFull>(rows[0] + at, lanes);
  for (int k = 1; k < n_rows; ++k) sum = sum + load_lanes<V, kFull>(rows[k] + at, lanes);
  const V xv = load_lanes<V, kFull>(x, lanes);
  store_lanes<V, kFull>(out, V::fma(load_lanes<V, kFull>(ls, lanes), sum * scale - xv, xv), lanes);
}

// One output row: window sums from the ring rows rows[0..n_rows) (row sums, W×C contiguous each), x the centre
// input row.
template <class V>
void mix_row(const Problem& p, const float* x, int64_t sw, const float* const* rows, int n_rows, float* out) {
  constexpr int VW = V::kWidth;
  const int64_t C = p.channels;
  const float* ls = p.layer_scale;
  for (int64_t w = 0; w < p.width; ++w, x += sw, out += C) {
    const int count = n_rows * Window(w, p.radius, p.width).count();
    const V scale = V::set1(1.0f / static_cast<float>(count));
    const int64_t at = w * C;
    int64_t c = 0;
    for (; c + VW <= C; c += VW) mix_vec<V, true>(rows, n_rows, at + c, x + c, ls + c, scale, out + c, VW);
    if (c < C) mix_vec<V, false>(rows, n_rows, at + c, x + c, ls + c, scale, out + c, static_cast<int>(C - c));
  }
}

template <class V>
void run_items_ring(const Problem& p, const Plan& plan, int64_t begin, int64_t end, float* scratch) {
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
      mix_row<V>(p, xb + h * sh, sw, rows, n_rows, ob + h * row_floats);
    }
  }
}

// ---- 3×3 (EfficientFormer): column sums slid along the row in registers ----------------------------------------
//
// Per block of NV channel vectors, walking w: the column sum of position w + 1 (its 2 or 3 input rows: kUp / kDown
// say whether the rows above / below exist) is loaded, and the window sum of w is prev + cur + next, all in
// registers; the centre value comes with the column sum. Per output vector that is 3 loads and 1 store (the ring
// path moves 8 loads and 2 stores through its scratch): 104 → 75 µs at 1 × 56² × 48 and 14.2 → 8.9 µs at
// 1 × 7² × 448, AVX2 (Zen 3, 1 thread, kernel alone).

template <class V, int NV, bool kFull, bool kUp, bool kDown>
inline void column_sums(const float* up, const float* mid, const float* down, int64_t at, int lanes, V (&sum)[NV],
                        V (&centre)[NV]) {
  constexpr int VW = V::kWidth;
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    centre[v] = load_lanes<V, kFull>(mid + at + v * VW, lanes);
    V s = centre[v];
    if constexpr (kUp) s = load_lanes<V, kFull>(up + at + v * VW, lanes) + s;
    if constexpr (kDown) s = s + load_lanes<V, kFull>(down + at + v * VW, lanes);
    sum[v] = s;
  }
}

// Output row (channels [c, c + NV·W) or, kFull false, the last `lanes`) from input rows up / mid / down.
template <class V, int NV, bool kFull, bool kUp, bool kDown>
void mix_strip3(const Problem& p, const float* up, const float* mid, const float* down, int64_t sw, int64_t c,
                float inv_rows, float* out, int lanes) {
  constexpr int VW = V::kWidth;
  const int64_t W = p.width, C = p.channels;
  V ls[NV], prev[NV], cur[NV], centre[NV], next[NV], next_centre[NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) ls[v] = load_lanes<V, kFull>(p.layer_scale + c + v * VW, lanes), prev[v] = V::zero();
  const V interior = V::set1(inv_rows / 3.0f), edge = V::set1(inv_rows / (W > 1 ? 2.0f : 1.0f));
  column_sums<V, NV, kFull, kUp, kDown>(up, mid, down, c, lanes, cur, centre);
  for (int64_t w = 0; w < W; ++w) {
    if (w + 1 < W) {
      column_sums<V, NV, kFull, kUp, kDown>(up, mid, down, (w + 1) * sw + c, lanes, next, next_centre);
    } else {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) next[v] = V::zero(), next_centre[v] = V::zero();  // past the row: none
    }
    const V scale = w == 0 || w == W - 1 ? edge : interior;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const V avg = (prev[v] + cur[v] + next[v]) * scale;
      store_lanes<V, kFull>(out + w * C + c + v * VW, V::fma(ls[v], avg - centre[v], centre[v]), lanes);
      prev[v] = cur[v], cur[v] = next[v], centre[v] = next_centre[v];
    }
  }
}

// Blocks of kBlock vectors across the channels, then single vectors, then the masked tail.
template <class V, bool kUp, bool kDown>
void mix_row3(const Problem& p, const float* up, const float* mid, const float* down, int64_t sw, float inv_rows,
              float* out) {
  constexpr int VW = V::kWidth, kBlock = V::kRegisters >= 32 ? 4 : 2;  // 6 live vectors per channel vector
  const int64_t C = p.channels;
  int64_t c = 0;
  for (; c + kBlock * VW <= C; c += kBlock * VW)
    mix_strip3<V, kBlock, true, kUp, kDown>(p, up, mid, down, sw, c, inv_rows, out, VW);
  for (; c + VW <= C; c += VW) mix_strip3<V, 1, true, kUp, kDown>(p, up, mid, down, sw, c, inv_rows, out, VW);
  if (c < C)
    mix_strip3<V, 1, false, kUp, kDown>(p, up, mid, down, sw, c, inv_rows, out, static_cast<int>(C - c));
}

template <class V>
void run_items_3x3(const Problem& p, const Plan& plan, int64_t begin, int64_t end) {
  const int64_t H = p.height, row_floats = p.width * p.channels;
  const int64_t sb = p.x_stride[0], sh = p.x_stride[1], sw = p.x_stride[2];
  for (int64_t item = begin; item < end; ++item) {
    const int64_t b = item / plan.bands, h0 = item % plan.bands * plan.band_rows;
    const int64_t h1 = std::min(H, h0 + plan.band_rows);
    const float* xb = p.x + b * sb;
    float* ob = p.out + b * H * row_floats;
    for (int64_t h = h0; h < h1; ++h) {
      const float* mid = xb + h * sh;
      const float* up = h > 0 ? mid - sh : nullptr;
      const float* down = h + 1 < H ? mid + sh : nullptr;
      float* out = ob + h * row_floats;
      if (up && down)
        mix_row3<V, true, true>(p, up, mid, down, sw, 1.0f / 3.0f, out);
      else if (up)
        mix_row3<V, true, false>(p, up, mid, down, sw, 0.5f, out);
      else if (down)
        mix_row3<V, false, true>(p, up, mid, down, sw, 0.5f, out);
      else
        mix_row3<V, false, false>(p, up, mid, down, sw, 1.0f, out);
    }
  }
}

template <class V>
void run_items(const Problem& p, const Plan& plan, int64_t begin, int64_t end, float* scratch) {
  if (p.radius == 1)
    run_items_3x3<V>(p, plan, begin, end);
  else
    run_items_ring<V>(p, plan, begin, end, scratch);
}

}  // namespace
}  // namespace levit::pool
