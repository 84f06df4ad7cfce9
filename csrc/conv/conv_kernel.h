// The direct (gather-free) convolution block, templated over the SIMD vector type V: the micro-kernel reads each
// output pixel's inputs straight from the map through its strides (an indirect GEMM: per pixel a pointer to its
// patch origin), so no patch row is ever copied. Include only from a per-ISA translation unit, after
// common/kernel_prelude.h, its `#pragma GCC target` and its vec header; everything is in an unnamed namespace (one
// copy per ISA, see common/kernel_prelude.h).
//
// A tile is R pixels of one output row whose taps share one clip of the kernel window (interior pixels: none; a
// pixel at the left or right border runs alone, its out-of-map columns skipped, as are out-of-map kernel rows), ×
// NV vectors of output channels of a packed weight panel. Per tap: NV panel loads, R broadcasts of the input,
// R·NV FMAs into registers; bias and activation on the registers, one store.
#pragma once
#include "common/kernel_prelude.h"
#include "conv/conv.h"
#include "gemm/gemm_kernel.h"  // the GEMM's epilogue helpers (activate, load_cols, store_cols)

namespace levit::conv {
namespace {

constexpr int kMaxTileVectors = 4;  // output-channel vectors per tile (a wider panel runs in chunks)
constexpr int kMaxTilePixels = 12;
// Accumulators of a tile wider than one vector on 32-register ISAs. At 12 × 2 (24 accumulators, 27 registers live in
// the tap loop) GCC 12 spilled accumulators to the stack inside the loop (perf annotate, 3→32 at 224²); at 10 × 2,
// 6 × 3 (AMD EPYC Zen 5, benchmarks/bench_cpu_conv.py, batch 16, 1 thread, ours NCHW / oneDNN in the same run, two
// runs): 3→32 0.55-0.56× → 0.61-0.65×, 3→48 0.53-0.58× → 0.61-0.63×. NEON (32 registers, the same tiles) is
// untimed; AVX2's 16 registers keep 6 × 2.
constexpr int kMaxWideTileAccumulators = 20;

// Pixels per tile for NV vectors: the R·NV accumulators, NV panel loads and a broadcast fit in the registers
// (AVX-512 and NEON: 12 × 1, 10 × 2, 6 × 3, 5 × 4 vectors; AVX2: 12 × 1, 6 × 2 (the GEMM's 6 × 16 tile), 3 × 3, 2 × 4).
template <class V, int NV>
constexpr int tile_pixels() {
  constexpr int fit = std::clamp((V::kRegisters - NV - 2) / NV, 1, kMaxTilePixels);
  return NV > 1 && V::kRegisters >= 32 ? std::min(fit, kMaxWideTileAccumulators / NV) : fit;
}

struct Tile {
  const float* origin;  // input at (b, iy0, ix0, 0) of the first pixel (iy0, ix0 may lie outside the map)
  int64_t pixel_step;   // floats between consecutive pixels' origins: stride_w · sw
  int64_t ky0, ky1, kx0, kx1;  // kernel rows / columns inside the map for every pixel of the tile
  const int64_t* tap_offset;  // map offset of a kernel row's tap j = kx·cin + ci: kx·sw + ci·sc
  const float* weight;  // packed panel at this chunk's first column
  const float* bias;    // at this chunk's first column, or null
  float* out;           // first pixel, this chunk's first column
  int n_valid;          // columns of the chunk inside the output
};

// A kernel row's in-map taps (kx, ci) run in patch order as one loop over a table of their map offsets, for any
// layout: two nested loops of 3 trips each (kx, then ci of an NCHW map) cost the stem's first layer a third of its
// time in loop overhead. kStep > 0: the pixel step known at compile time (the stem's, below), so a tap's
// R broadcasts are one base register plus constant displacements; with a run-time step GCC holds R offsets r·step in
// general registers, runs out of them and reloads spilled ones inside the tap loop (perf annotate: those reloads
// were the hottest instructions of the layer). Both measured on AMD EPYC Zen 5 (avx512), 3→16 at 224², batch 16,
// 1 thread, interleaved medians of thread CPU time, 3 runs: NCHW 2.98-3.70 → 1.91-2.25 ms, NHWC 2.66-3.21 →
// 2.17-2.38 ms.
template <class V, int R, int NV, int kStep>
void pixel_tile(const ConvArgs& a, int64_t nr, const Tile& t) {
  constexpr int W = V::kWidth;
  V acc[R][NV];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = V::zero();
  const int64_t step = kStep > 0 ? kStep : t.pixel_step, cin = a.cin;
  // One tap: input p[r·step] of every pixel times the panel row w.
  auto tap = [&](const float* p, const float* w) {
    V wv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) wv[v] = V::load(w + v * W);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const V xv = V::set1(p[r * step]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = V::fma(xv, wv[v], acc[r][v]);
    }
  };
  for (int64_t ky = t.ky0; ky < t.ky1; ++ky) {
    const float* row = t.origin + ky * a.sh;
    const float* wrow = t.weight + ky * a.kw * cin * nr;
    const int64_t* offset = t.tap_offset;
#pragma GCC unroll 4
    for (int64_t j = t.kx0 * cin; j < t.kx1 * cin; ++j) tap(row + offset[j], wrow + j * nr);
  }
  if (t.bias != nullptr) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const V bias = gemm::load_cols<V>(t.bias + v * W, t.n_valid - v * W);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) acc[r][v] = acc[r][v] + bias;
    }
  }
  gemm::activate(acc, a.act);
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) gemm::store_cols<V>(t.out + r * a.cout + v * W, acc[r][v], t.n_valid - v * W);
}

// pixel_tile with R = pixels (1..RMAX); full tiles match first.
template <class V, int RMAX, int NV, int kStep>
inline void pixels_tile(int pixels, const ConvArgs& a, int64_t nr, const Tile& t) {
  if constexpr (RMAX == 1) {
    pixel_tile<V, 1, NV, kStep>(a, nr, t);
  } else {
    if (pixels == RMAX)
      pixel_tile<V, RMAX, NV, kStep>(a, nr, t);
    else
      pixels_tile<V, RMAX - 1, NV, kStep>(pixels, a, nr, t);
  }
}

// One run of `pixels` ≤ tile_pixels<V, NV>() with NV = vectors (1..kMaxTileVectors) of output channels.
template <class V, int kStep, int NV = kMaxTileVectors>
inline void chunk_tile(int vectors, int pixels, const ConvArgs& a, int64_t nr, const Tile& t) {
  if constexpr (NV == 1) {
    pixels_tile<V, tile_pixels<V, 1>(), 1, kStep>(pixels, a, nr, t);
  } else {
    if (vectors == NV)
      pixels_tile<V, tile_pixels<V, NV>(), NV, kStep>(pixels, a, nr, t);
    else
      chunk_tile<V, kStep, NV - 1>(vectors, pixels, a, nr, t);
  }
}

template <class V>
int max_tile_pixels(int vectors) {
  constexpr int pixels[kMaxTileVectors] = {tile_pixels<V, 1>(), tile_pixels<V, 2>(), tile_pixels<V, 3>(),
                                           tile_pixels<V, 4>()};
  return pixels[vectors - 1];
}

// Output pixels [m0, m1) × channels [n0, n1) (n0 a multiple of nr): per column chunk, output-row segments cut into
// border pixels (alone, window clipped) and interior tiles.
template <class V, int kStep>
void direct_block(const ConvArgs& a, int64_t nr, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  constexpr int W = V::kWidth;
  const int64_t k = patch_width(a);
  // The tap table, on the stack for the rows the direct path runs in production (kw·cin ≤ kRowTapsOnStack; called
  // once per row block of ~100 pixels, where a heap allocation each time would be a per-block cost).
  constexpr int64_t kRowTapsOnStack = 64;
  int64_t taps_on_stack[kRowTapsOnStack];
  std::vector<int64_t> taps_on_heap;
  int64_t* tap_offset = taps_on_stack;
  if (a.kw * a.cin > kRowTapsOnStack) {
    taps_on_heap.resize(a.kw * a.cin);
    tap_offset = taps_on_heap.data();
  }
  for (int64_t kx = 0; kx < a.kw; ++kx)
    for (int64_t c = 0; c < a.cin; ++c) tap_offset[kx * a.cin + c] = kx * a.sw + c * a.sc;
  // Output columns whose every kernel column lies inside the map: ox·s − pw ≥ 0 and ox·s − pw + kw ≤ w.
  const int64_t ox_lo = std::min(a.wo, (a.pad_w + a.stride_w - 1) / a.stride_w);
  const int64_t ox_hi = a.w + a.pad_w < a.kw ? ox_lo
                        : std::clamp<int64_t>((a.w + a.pad_w - a.kw) / a.stride_w + 1, ox_lo, a.wo);
  for (int64_t j = n0; j < n1; j += nr) {
    const float* panel = a.packed + j / nr * k * nr;
    for (int64_t c0 = j; c0 < std::min(n1, j + nr); c0 += kMaxTileVectors * W) {
      const int n_valid = static_cast<int>(std::min<int64_t>({kMaxTileVectors * W, n1 - c0, j + nr - c0}));
      const int vectors = (n_valid + W - 1) / W, max_pixels = max_tile_pixels<V>(vectors);
      Tile t{};
      t.tap_offset = tap_offset;
      t.pixel_step = a.stride_w * a.sw;
      t.weight = panel + (c0 - j);
      t.bias = a.bias ? a.bias + c0 : nullptr;
      t.n_valid = n_valid;
      for (int64_t m = m0; m < m1;) {
        const int64_t b = m / (a.ho * a.wo), oy = m / a.wo % a.ho, ox = m % a.wo;
        const int64_t end = std::min(m1, m + a.wo - ox);  // this output row's pixels in the block
        const int64_t iy0 = oy * a.stride_h - a.pad_h;
        t.ky0 = std::clamp<int64_t>(-iy0, 0, a.kh), t.ky1 = std::clamp<int64_t>(a.h - iy0, t.ky0, a.kh);
        const float* row_origin = a.x + b * a.sb + iy0 * a.sh - a.pad_w * a.sw;  // ox = 0, before its offset
        for (int64_t i = m; i < end;) {
          const int64_t x = i - m + ox;
          int64_t run = 1;
          if (x >= ox_lo && x < ox_hi) {
            run = std::min<int64_t>({max_pixels, ox_hi - x, end - i});
            t.kx0 = 0, t.kx1 = a.kw;
          } else {
            const int64_t ix0 = x * a.stride_w - a.pad_w;
            t.kx0 = std::clamp<int64_t>(-ix0, 0, a.kw), t.kx1 = std::clamp<int64_t>(a.w - ix0, t.kx0, a.kw);
          }
          t.origin = row_origin + x * t.pixel_step;
          t.out = a.out + i * a.cout + c0;
          chunk_tile<V, kStep>(vectors, static_cast<int>(run), a, nr, t);
          i += run;
        }
        m = end;
      }
    }
  }
}

// Pixel steps compiled as constants: the stem's first layer (3 channels, stride 2) on the NCHW images as given
// (unit-stride columns: 2) and on channels-last images (3 channels per pixel: 6).
constexpr int kStepNchwStride2 = 2, kStepNhwc3Stride2 = 6;

template <class V>
void direct_conv_block(const ConvArgs& a, int64_t nr, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const int64_t step = a.stride_w * a.sw;
  if (step == kStepNchwStride2)
    direct_block<V, kStepNchwStride2>(a, nr, m0, m1, n0, n1);
  else if (step == kStepNhwc3Stride2)
    direct_block<V, kStepNhwc3Stride2>(a, nr, m0, m1, n0, n1);
  else
    direct_block<V, 0>(a, nr, m0, m1, n0, n1);
}

}  // namespace
}  // namespace levit::conv
