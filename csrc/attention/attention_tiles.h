// Register-tiled multiply shared by the attention kernels (csrc/attention: biased_attention and shrink_attention;
// csrc/flash: attention with an online softmax): C = A·B with A read through row pointers and an element step (so
// strided views of q, k and v need no copy) and B as contiguous rows, the accumulators handed to a store callback
// (each kernel's epilogue: bias, running maxima, rescaling). Templates over the SIMD vector type V (csrc/simd),
// included by the per-ISA translation units after their target pragma.
#pragma once
#include "common/kernel_prelude.h"

namespace levit::attention {

// Register tile of the multiply: kRows rows × kVecs vectors of accumulators, leaving registers for the kVecs
// loaded B vectors and one broadcast A element. Each kernel passes its own to multiply(): the attention kernels
// their ISA's (attention_<isa>.cpp), flash its FlashTile.
template <int R, int NV>
struct TileShape {
  static constexpr int kRows = R;
  static constexpr int kVecs = NV;
};

// Most rows any tile has: row-pointer arrays hold this many − 1 beyond the rows they point to.
constexpr int kMaxRegisterRows = 6;
// Tallest register tile of a one-vector column block (multiply_narrow); it runs on whole tiles only, so it needs
// no row-pointer padding.
constexpr int kMaxNarrowRows = 16;

template <class V, int R, int NV>
constexpr int vecs_of(const V (&)[R][NV]) {
  return NV;
}
// Rows of an accumulator tile. Store callbacks that loop `for (r < rows_of(acc)) { if (r == valid) break; … }`
// index acc by constants only, so it stays in registers (a loop bounded by `valid` alone spills the tile to the
// stack first).
template <class V, int R, int NV>
constexpr int rows_of(const V (&)[R][NV]) {
  return R;
}

// acc[r][c] = Σ_k a[r][k·a_step] · b[k·b_ld + c·W + lane]: MR rows of A read through row pointers and an element
// step (strided views need no copy), B rows of contiguous floats. With kTail the last vector has `tail` lanes.
template <class V, int MR, int NV, bool kTail>
inline void multiply_block(int depth, const float* const* a, int64_t a_step, const float* b, int64_t b_ld, int tail,
                           V (&acc)[MR][NV]) {
  constexpr int W = V::kWidth;
  const float* rows[MR];
  for (int r = 0; r < MR; ++r) rows[r] = a[r];
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NV; ++c) acc[r][c] = V::zero();
  for (int k = 0; k < depth; ++k, b += b_ld) {
    V bv[NV];
    for (int c = 0; c < NV; ++c)
      bv[c] = (kTail && c == NV - 1) ? V::load_partial(b + c * W, tail) : V::load(b + c * W);
    const int64_t at = k * a_step;
    for (int r = 0; r < MR; ++r) {
      const V av = V::set1(rows[r][at]);
      for (int c = 0; c < NV; ++c) acc[r][c] = V::fma(av, bv[c], acc[r][c]);
    }
  }
}

// Rows [r0, rows) × one column block of NV vectors (the last with `tail` lanes): register tiles of R rows while
// whole ones fit, the rest in tiles of MR rows, the last of them partial (its extra rows computed from the padded
// row pointers, never stored), as with R = MR alone.
template <class V, int R, int MR, int NV, bool kTail, class Store>
inline void multiply_rows(int r0, int rows, int tail, int depth, const float* const* a, int64_t a_step,
                          const float* b, int64_t b_ld, int col, int cols, Store& store) {
  for (; r0 + R <= rows; r0 += R) {
    V acc[R][NV];
    multiply_block<V, R, NV, kTail>(depth, a + r0, a_step, b + col, b_ld, tail, acc);
    store(acc, r0, R, col, cols);
  }
  for (; r0 < rows; r0 += MR) {
    V acc[MR][NV];
    multiply_block<V, MR, NV, kTail>(depth, a + r0, a_step, b + col, b_ld, tail, acc);
    store(acc, r0, std::min(MR, rows - r0), col, cols);
  }
}

// A column block narrower than the tile: `vecs` (< NV, or NV with a partial last vector) vectors, the last with
// `tail` lanes. A one-vector block runs in tiles of min(16, MR·NV) rows, as many accumulators as the full tile:
// with MR rows it would do one FMA per broadcast. That block is the last 16 keys of q·kᵀ at N = 196 (keys padded
// to 208) and the whole of a D = 16 product; AMD EPYC Zen 4 (AVX-512, 4×4 → 16×1), 1 thread, batch 16, medians of
// 6 alternating rounds: LeViT-128S stage 1 4.24 → 3.88 ms, LeViT-256 stage 1 and the 7×7 / 4×4 stages level.
// Two- and three-vector blocks at MR·NV / vecs rows (8×2, 5×3) measured 9% slower at 128S stage 1 (not kept).
template <class V, int MR, int NV, int NVB, class Store>
inline void multiply_narrow(int vecs, int tail, int rows, int depth, const float* const* a, int64_t a_step,
                            const float* b, int64_t b_ld, int col, int cols, Store& store) {
  if constexpr (NVB > 0) {
    if (vecs != NVB)
      return multiply_narrow<V, MR, NV, NVB - 1>(vecs, tail, rows, depth, a, a_step, b, b_ld, col, cols, store);
    constexpr int R = NVB == 1 ? std::max(MR, std::min(kMaxNarrowRows, MR * NV)) : MR;
    if (tail == V::kWidth)
      multiply_rows<V, R, MR, NVB, false>(0, rows, tail, depth, a, a_step, b, b_ld, col, cols, store);
    else
      multiply_rows<V, R, MR, NVB, true>(0, rows, tail, depth, a, a_step, b, b_ld, col, cols, store);
  }
}

// Rows of A (row pointers a[0..rows), plus kMaxRegisterRows − 1 more repeating the last: computed, never stored)
// times the first n columns of B (depth rows). Column blocks outermost: the block's slice of B (depth × kVecs·W
// floats) stays in L1 while every row block streams past it. store(acc, r0, valid_rows, col, cols) consumes the
// accumulators of rows [r0, r0 + valid_rows) × columns [col, col + cols).
template <class V, class Tile, class Store>
inline void multiply(int rows, const float* const* a, int64_t a_step, const float* b, int64_t b_ld, int n, int depth,
                     Store&& store) {
  constexpr int MR = Tile::kRows, NV = Tile::kVecs, W = V::kWidth;
  static_assert(MR <= kMaxRegisterRows, "tile taller than the row-pointer padding");
  for (int col = 0; col < n; col += NV * W) {
    const int cols = std::min(NV * W, n - col);
    auto block_store = [&](auto& acc, int r0, int valid, int c, int nc) { store(acc, r0, valid, c, nc); };
    if (cols == NV * W) {
      multiply_rows<V, MR, MR, NV, false>(0, rows, W, depth, a, a_step, b, b_ld, col, cols, block_store);
    } else {
      const int vecs = (cols + W - 1) / W;
      multiply_narrow<V, MR, NV, NV>(vecs, cols - (vecs - 1) * W, rows, depth, a, a_step, b, b_ld, col, cols,
                                     block_store);
    }
  }
}

// Row pointers for multiply(): row_ptr(i) for i < rows, then the last row repeated up to a whole register tile of
// any kernel (out holds rows + kMaxRegisterRows − 1 pointers).
template <class RowPtr>
inline void row_pointers(int rows, RowPtr&& row_ptr, const float** out) {
  for (int i = 0; i < rows; ++i) out[i] = row_ptr(i);
  for (int i = rows; i < rows + kMaxRegisterRows - 1; ++i) out[i] = out[rows - 1];
}

// Stores lanes [0, n) of v to p (n ≤ W).
template <class V>
inline void store_lanes(float* p, V v, int n) {
  if (n >= V::kWidth)
    V::store(p, v);
  else if (n > 0)
    V::store_partial(p, v, n);
}

}  // namespace levit::attention
