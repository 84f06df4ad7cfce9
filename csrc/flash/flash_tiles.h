// Register-tiled multiply of the flash kernel: C = A·B with A packed as panels of kPanelRows rows (a panel holds
// element k of its rows at k·kPanelRows + r, so one pointer walks all the tile's broadcasts) and B as rows of
// contiguous floats whose width is a whole number of vectors. Templates over the SIMD vector type V (csrc/simd),
// included by the per-ISA translation units after their target pragma.
#pragma once
#include "common/kernel_prelude.h"
#include "flash/flash_kernel.h"

namespace levit::flash {

// acc[r][c] = Σ_k a[k·kPanelRows + r] · b[k·b_ld + c·W + lane].
template <class V, int NV>
inline void panel_block(int depth, const float* a, const float* b, int64_t b_ld, V (&acc)[kPanelRows][NV]) {
  constexpr int W = V::kWidth;
  for (int r = 0; r < kPanelRows; ++r)
    for (int c = 0; c < NV; ++c) acc[r][c] = V::zero();
  for (int k = 0; k < depth; ++k, a += kPanelRows, b += b_ld) {
    V bv[NV];
    for (int c = 0; c < NV; ++c) bv[c] = V::load(b + c * W);
    for (int r = 0; r < kPanelRows; ++r) {
      const V av = V::set1(a[r]);
      for (int c = 0; c < NV; ++c) acc[r][c] = V::fma(av, bv[c], acc[r][c]);
    }
  }
}

// Panels [g0, g1) (panel g at a + g·a_panel) times the NV vectors of B's columns from `col`.
template <class V, int NV, class Store>
inline void panel_column(int g0, int g1, const float* a, int64_t a_panel, int depth, const float* b, int64_t b_ld,
                         int col, Store& store) {
  for (int g = g0; g < g1; ++g) {
    V acc[kPanelRows][NV];
    panel_block<V, NV>(depth, a + g * a_panel, b + col, b_ld, acc);
    store(acc, g, col);
  }
}

// The same for a column block of `vecs` ≤ NV vectors (the last one of B, when its width is no multiple of NV).
template <class V, int NV, class Store>
inline void panel_column_of(int vecs, int g0, int g1, const float* a, int64_t a_panel, int depth, const float* b,
                            int64_t b_ld, int col, Store& store) {
  if constexpr (NV > 1)
    if (vecs < NV) return panel_column_of<V, NV - 1>(vecs, g0, g1, a, a_panel, depth, b, b_ld, col, store);
  panel_column<V, NV>(g0, g1, a, a_panel, depth, b, b_ld, col, store);
}

// `panels` panels of A (depth elements per row) times the first `lanes` columns of B (a multiple of V::kWidth);
// store(acc, g, col) consumes the accumulators of panel g's rows × columns [col, col + vecs_of(acc)·W).
// kPanelsOuter: each panel meets every column block in turn (the panel stays in L1); otherwise each column block
// of B meets every panel (B's column block stays in L1).
template <class V, class Tile, bool kPanelsOuter, class Store>
inline void panel_multiply(int panels, const float* a, int64_t a_panel, int depth, const float* b, int64_t b_ld,
                           int lanes, Store&& store) {
  constexpr int NV = Tile::kVecs, W = V::kWidth;
  static_assert(Tile::kRows == kPanelRows, "the register tile must be as tall as the panels");
  auto columns = [&](int g0, int g1) {
    for (int col = 0; col < lanes; col += NV * W)
      panel_column_of<V, NV>(std::min(NV, (lanes - col) / W), g0, g1, a, a_panel, depth, b, b_ld, col, store);
  };
  if constexpr (kPanelsOuter) {
    for (int g = 0; g < panels; ++g) columns(g, g + 1);
  } else {
    columns(0, panels);
  }
}

}  // namespace levit::flash
