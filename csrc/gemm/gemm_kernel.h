// Register-blocked GEMM micro-kernel with a fused epilogue, templated over the SIMD vector type V.
// Include only from a per-ISA translation unit, after common/kernel_prelude.h, its `#pragma GCC target` and its
// vec header. Everything here is in an unnamed namespace, so each ISA's translation unit has its own copy and no
// symbol compiled for one target is shared with another.
#pragma once
#include "common/kernel_prelude.h"
#include "gemm/gemm.h"
#include "simd/activations.h"

namespace levit::gemm {
namespace {

// First `count` lanes from p (count may be ≤ 0: nothing is read).
template <class V>
inline V load_cols(const float* p, int count) {
  return count >= V::kWidth ? V::load(p) : V::load_partial(p, count > 0 ? count : 0);
}

template <class V>
inline void store_cols(float* p, V v, int count) {
  if (count >= V::kWidth)
    V::store(p, v);
  else if (count > 0)
    V::store_partial(p, v, count);
}

// What the last K block applies to the accumulators before the store; pointers already offset to the tile.
struct Epilogue {
  const float* bias;      // or null
  const float* residual;  // or null
  int64_t ldr;
  Activation act;
};

// acc = f(acc) on every register of the tile.
template <class V, int R, int NV, class F>
inline void each_register(V (&acc)[R][NV], F f) {
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = f(acc[r][v]);
}

// The activation on the register tile: one switch per tile, straight-line code per activation inside.
template <class V, int R, int NV>
inline void activate(V (&acc)[R][NV], Activation act) {
  switch (act) {
    case Activation::kHardswish: return each_register(acc, simd::hardswish<V>);
    case Activation::kGelu: return each_register(acc, simd::gelu<V>);
    case Activation::kRelu: return each_register(acc, simd::relu<V>);
    default: return;
  }
}

constexpr int kFloatsPerLine = 64 / static_cast<int>(sizeof(float));  // a 64-byte cache line

struct Tile {
  const float* a;  // R rows of x, this K block
  int64_t lda;
  const float* b;  // kc × NR of a packed panel (NR: the table's panel width; a tile may use only its first columns)
  int64_t kc;
  float* c;  // R × n_valid of the output
  int64_t ldc;
  int n_valid;             // columns of the tile inside the output (≤ NR)
  bool accumulate;         // add the partial sums earlier K blocks stored in c
  const Epilogue* finish;  // null unless this is the last K block
};

// R × (NV·W) accumulators live in registers across the K loop: per k, NV vector loads of the packed panel (NR
// floats apart from one k to the next; NV·W <= NR) and R broadcasts of x feed R·NV independent FMAs. The epilogue
// runs on the registers; c is written once per K block.
template <class V, int R, int NV, int NR>
void micro_tile(const Tile& t) {
  constexpr int W = V::kWidth;
  static_assert(NV * W <= NR);
  V acc[R][NV];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = V::zero();

  // The lines the epilogue reads (residual) and writes (c) are requested now, so their misses resolve behind the
  // K loop instead of stalling the stores at its end (AMD EPYC Zen 4, avx512, 6 × 64 tile: +2% geomean over the
  // LeViT-256 projections, +3-7% on the +residual ones; it costs R·NV/4 prefetches per tile).
  if (const Epilogue* e = t.finish) {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int col = 0; col < NV * W; col += kFloatsPerLine) {
        __builtin_prefetch(t.c + r * t.ldc + col, 1, 3);
        if (e->residual != nullptr) __builtin_prefetch(e->residual + r * e->ldr + col, 0, 3);
      }
  }
  const float* a = t.a;
  const float* b = t.b;
  // Unrolled 8 k deep: fewer loop-carried pointer/counter updates and branches between the FMAs, and more
  // independent loads in flight (AVX2 on Zen 3: +3-5% with everything in L1, +5-12% on the LeViT shapes).
#pragma GCC unroll 8
  for (int64_t k = 0; k < t.kc; ++k, b += NR) {
    V bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = V::load(b + v * W);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const V av = V::set1(a[r * t.lda + k]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = V::fma(av, bv[v], acc[r][v]);
    }
  }

  if (t.accumulate) {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = acc[r][v] + load_cols<V>(t.c + r * t.ldc + v * W, t.n_valid - v * W);
  }
  if (const Epilogue* e = t.finish) {
    if (e->bias != nullptr) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        const V bias = load_cols<V>(e->bias + v * W, t.n_valid - v * W);
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) acc[r][v] = acc[r][v] + bias;
      }
    }
    activate(acc, e->act);
    if (e->residual != nullptr) {
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v)
          acc[r][v] = acc[r][v] + load_cols<V>(e->residual + r * e->ldr + v * W, t.n_valid - v * W);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) store_cols<V>(t.c + r * t.ldc + v * W, acc[r][v], t.n_valid - v * W);
}

// micro_tile with R = rows, for rows in 1..MR (the last row tile of a block may be short); full tiles match first.
template <class V, int MR, int NV, int NR>
inline void row_tile(int rows, const Tile& t) {
  if constexpr (MR == 1) {
    micro_tile<V, 1, NV, NR>(t);
  } else {
    if (rows == MR)
      micro_tile<V, MR, NV, NR>(t);
    else
      row_tile<V, MR - 1, NV, NR>(rows, t);
  }
}

// row_tile with NV = the vectors the tile's valid columns need, for NV in 1..NVMAX: a narrow last panel (e.g. 32
// output channels in a 64-wide panel) runs no FMAs on its zero padding. Full-width panels match first.
template <class V, int MR, int NVMAX, int NR>
inline void tile(int rows, const Tile& t) {
  if constexpr (NVMAX == 1) {
    row_tile<V, MR, 1, NR>(rows, t);
  } else {
    if (t.n_valid > (NVMAX - 1) * V::kWidth)
      row_tile<V, MR, NVMAX, NR>(rows, t);
    else
      tile<V, MR, NVMAX - 1, NR>(rows, t);
  }
}

// Loop nest: K blocks (of at most KC, split evenly) → column panels → row tiles of MR; or K blocks → row tiles →
// column panels when the block's weight (this K block × the block's columns) is at most RowsOuterFloats, i.e. stays
// in L2 while every row tile sweeps it: then a tile's x rows are read from L1 for every panel after the first, and
// its output (and residual) rows are written (read) whole, one stream per row. (AMD EPYC Zen 4, avx512, 6 × 64,
// 256 KiB: +3-6% at K = 128-256 — 3136 × 128 → 128 +res 1.06×, 784 × 192 → 256 +res 1.07×, 3136 × 128 → 256 1.03×
// —, within noise at the other LeViT projections; sweeping all of a larger weight per row tile measured up to 8%
// slower at LeViT-384's 512 → 2560 and 2048 → 768.)
template <class V, int MR, int NV, int KC, int64_t RowsOuterFloats = 0>
void linear_block(const LinearArgs& args, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  constexpr int NR = NV * V::kWidth;
  const int64_t k = args.k, blocks = std::max<int64_t>((k + KC - 1) / KC, 1), block = (k + blocks - 1) / blocks;
  for (int64_t k0 = 0;; k0 += block) {  // runs once even when k == 0, for the epilogue
    const int64_t kc = std::min<int64_t>(block, k - k0);
    const bool last = k0 + kc >= k;
    const auto run = [&](int64_t i, int64_t j) {
      const int rows = static_cast<int>(std::min<int64_t>(MR, m1 - i));
      const Epilogue finish{args.bias ? args.bias + j : nullptr,
                            args.residual ? args.residual + i * args.ldr + j : nullptr, args.ldr, args.act};
      Tile t{};
      t.a = args.x + i * args.ldx + k0;
      t.lda = args.ldx;
      t.b = args.packed + (j / NR) * k * NR + k0 * NR;
      t.kc = kc;
      t.c = args.out + i * args.ldo + j;
      t.ldc = args.ldo;
      t.n_valid = static_cast<int>(std::min<int64_t>(NR, n1 - j));
      t.accumulate = k0 > 0;
      t.finish = last ? &finish : nullptr;
      tile<V, MR, NV, NR>(rows, t);
    };
    if (kc * (n1 - n0) <= RowsOuterFloats) {
      for (int64_t i = m0; i < m1; i += MR)
        for (int64_t j = n0; j < n1; j += NR) run(i, j);
    } else {
      for (int64_t j = n0; j < n1; j += NR)
        for (int64_t i = m0; i < m1; i += MR) run(i, j);
    }
    if (last) break;
  }
}

// The peak yardstick: kFmaChains independent FMA chains on registers, no memory traffic (current x86 cores have 2
// FMA pipes of 4-cycle latency, so >= 8 chains keep them busy). Returns a sum of the chains so none is dropped.
constexpr int kFmaChains = 12;

template <class V>
float fma_chains(int64_t iterations) {
  V acc[kFmaChains];
#pragma GCC unroll 16
  for (int i = 0; i < kFmaChains; ++i) acc[i] = V::set1(0.01f * i);
  const V m = V::set1(0.999999f), c = V::set1(1e-7f);  // converges to 0.1: never denormal, never overflows
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < kFmaChains; ++i) acc[i] = V::fma(acc[i], m, c);
  }
  V sum = V::zero();
#pragma GCC unroll 16
  for (int i = 0; i < kFmaChains; ++i) sum = sum + acc[i];
  return V::reduce_add(sum);
}

template <class V, int MR, int NV, int KC, int64_t RowsOuterFloats = 0>
constexpr Kernels make_kernels() {
  return Kernels{Geometry{MR, NV * V::kWidth, KC}, &linear_block<V, MR, NV, KC, RowsOuterFloats>, &fma_chains<V>,
                 2 * kFmaChains * V::kWidth};
}

}  // namespace
}  // namespace levit::gemm
