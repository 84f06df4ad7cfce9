// The attention kernels as templates over a SIMD vector type V (csrc/simd). Included by the per-ISA translation
// units after their target pragma. Everything here is a template over V, so the code compiled for one ISA never
// shares a symbol with another's (see common/kernel_prelude.h).
//
// Per work item (head h, batch b, tile of queries), everything stays in the thread's workspace; scores are kept in
// the base-2 domain (log2(e)·logit), so the softmax takes exp2 of non-positive arguments (simd/exp.h), about half
// the work of exp:
//   scores[i][j] = log2e·bias[h, idx(i, j)]       copied from a mirrored bias table, no index tensor
//   scores[i][j] = log2e·scale·(q_i · k_j) + scores  register-tiled multiply with kᵀ packed once per (b, h); the
//                                                  row maxima are kept on the way
//   scores[i][j] = 2^(scores − max_i), row sums    stable softmax; normalisation deferred to the output
//   out[i] = act((scores_i · V) / sum_i)           register-tiled multiply with V packed once per (b, h)
// shrink_attention first computes the tile's queries: q_i = x[token(i)] · q_weightᵀ + q_bias, reading x's rows in
// place (the stride-s grid is index arithmetic) against the head's q_weight slice (see query_weight).
//
// The register tile is the ISA's (attention_<isa>.cpp, make_kernels). Measured together, the AVX2 4 × 2 tile and
// the base-2 softmax made the kernel 1.19x faster at LeViT-128S stage 1 (B = 16, H = 4, N = 196, D = 16, Dv = 32),
// 1.23x at stage 2 (N = 49), 1.11x at stage 3 (N = 16), 1.10x at LeViT-256 stage 1 (D = 32, Dv = 64) and 1.05-1.09x
// on the shrinks (AMD EPYC, 1 thread; medians of alternating runs of the old and new kernel).
#pragma once
#include "attention/attention_kernel.h"
#include "common/kernel_prelude.h"
#include "attention/attention_tiles.h"
#include "simd/activations.h"
#include "simd/exp.h"

namespace levit::attention {

// Thread-private buffers, carved from the workspace by the plan's offsets.
template <class V>
struct Buffers {
  float* kt;         // (D, keys_padded): kᵀ of the current (batch, head), zero-padded keys
  float* v;          // (Nk, value_dim_padded): v of the current (batch, head), rows contiguous
  float* bias;       // (Rh, bias_ld): mirrored bias table of the current head, row dy: bias[h, dy·Rw + |t − (Rw−1)|]
  float* scores;     // (tile_rows, score_ld)
  float* row_scale;  // (tile_rows): 1 / softmax denominator
  float* row_max;    // (tile_rows, kMaxWidth): lane-wise running maxima of the score rows
  float* q;          // shrink: (tile_rows, key_dim_padded) projected queries
  float* wq;         // shrink: (C, key_dim_padded) the head's q_weight rows, transposed and zero-padded
  float* bq;         // shrink: (key_dim_padded) the head's q_bias, zero-padded
};

// shrink: the current head's query projection as project_queries reads it, w[c·ld + d] = q_weight[h·D + d, c] and
// b[d] = q_bias[h·D + d], both read in whole vectors up to D rounded up to the vector width.
struct QueryWeight {
  const float* w = nullptr;
  int64_t ld = 0;
  const float* b = nullptr;
};

// Rows of a view into a packed (B, N, H, ·) tensor lie H·(row length) apart, often more than a page: the hardware
// prefetchers do not follow them, so the packing loops prefetch ahead: v kPrefetchRows rows, kᵀ one block of keys.
constexpr int kPrefetchRows = 8;

constexpr float kLog2e = 1.44269504088896341f;

template <class V>
inline void prefetch_row(const float* row, int n, int64_t step) {
  const char* first = reinterpret_cast<const char*>(row);
  const char* last = reinterpret_cast<const char*>(row + (n - 1) * step);
  for (const char* line = first; line <= last; line += 64) __builtin_prefetch(line);
  __builtin_prefetch(last);
}

template <class V>
void pack_keys_transposed(const Problem& p, const Plan& plan, int b, int h, float* kt) {
  const int nk = p.num_keys(), ld = plan.keys_padded, D = p.key_dim;
  const int64_t step = p.k.stride[3];
  // Blocks of kBlock keys: their rows are read once from memory into L1 (prefetched a block ahead), then written
  // out dimension by dimension as contiguous runs of kᵀ. Replaces a key-by-key loop that stored each key's D
  // elements D lines apart; perf put ~14% of the LeViT-256 stage-1 kernel in the packing. Measured on AMD EPYC
  // Zen 4 (avx512, 1 thread, batch 16, q/k/v views of the packed qkv, medians of 3 alternating rounds): the whole
  // kernel at LeViT-256 stage 1 7.57 → 7.36 ms, stage 2 1.10 → 0.86 ms, stage 3 level (0.19 → 0.20 ms, within
  // its noise), LeViT-128S stage 1 5.44 → 4.02 ms, LeViT-384 stage 1 11.67 → 11.07 ms.
  constexpr int kBlock = 16;
  const float* rows[kBlock];
  for (int j0 = 0; j0 < nk; j0 += kBlock) {
    const int n = std::min(kBlock, nk - j0);
    for (int j = 0; j < n; ++j) rows[j] = p.k.row(b, h, j0 + j);
    for (int j = 0; j < kBlock && j0 + kBlock + j < nk; ++j) prefetch_row<V>(p.k.row(b, h, j0 + kBlock + j), D, step);
    for (int d = 0; d < D; ++d) {
      float* dst = kt + static_cast<int64_t>(d) * ld + j0;
      const int64_t at = d * step;
      for (int j = 0; j < n; ++j) dst[j] = rows[j][at];
    }
  }
  for (int d = 0; d < D; ++d) std::fill(kt + static_cast<int64_t>(d) * ld + nk, kt + (d + 1) * ld, 0.0f);
}

// Packing v (cheap next to the Nq·Nk·Dv multiply) gives the multiply contiguous, aligned rows already in cache,
// whatever the view's layout (measured ~8% faster than reading unit-stride rows in place).
template <class V>
void pack_values(const Problem& p, const Plan& plan, int b, int h, float* v) {
  constexpr int W = V::kWidth;
  const int ld = plan.value_dim_padded, dv = p.value_dim;
  const int64_t step = p.v.stride[3];
  for (int j = 0; j < p.num_keys(); ++j) {
    const float* row = p.v.row(b, h, j);
    if (j + kPrefetchRows < p.num_keys()) prefetch_row<V>(p.v.row(b, h, j + kPrefetchRows), dv, step);
    float* dst = v + static_cast<int64_t>(j) * ld;
    if (step == 1) {
      int c = 0;
      for (; c + W <= dv; c += W) V::store(dst + c, V::load(row + c));
      if (c < dv) V::store_partial(dst + c, V::load_partial(row + c, dv - c), dv - c);
    } else {
      for (int c = 0; c < dv; ++c) dst[c] = row[c * step];
    }
  }
}

// Row dy holds bias[h, dy·Rw + |t − (Rw−1)|] at t ∈ [0, 2Rw−1): the biases of query column xq against key columns
// xk = 0..Rw−1 at row distance dy are then the contiguous run starting at t = Rw−1−xq.
template <class V>
void mirror_bias(const Problem& p, const Plan& plan, int h, float* table) {
  const int Rw = p.grid_w;
  const float* src = p.bias + h * p.bias_stride[0];
  for (int dy = 0; dy < p.grid_h; ++dy) {
    float* row = table + static_cast<int64_t>(dy) * plan.bias_ld;
    for (int t = 0; t < 2 * Rw - 1; ++t)
      row[t] = kLog2e * src[(dy * Rw + std::abs(t - (Rw - 1))) * p.bias_stride[1]];
    std::fill(row + 2 * Rw - 1, row + plan.bias_ld, 0.0f);
  }
}

template <class V>
void pack_query_weight(const Problem& p, const Plan& plan, int h, float* wq, float* bq) {
  const int ld = plan.key_dim_padded, D = p.key_dim;
  std::fill(wq, wq + static_cast<int64_t>(p.channels) * ld, 0.0f);
  std::fill(bq, bq + ld, 0.0f);
  for (int d = 0; d < D; ++d) {
    const int64_t out_row = static_cast<int64_t>(h) * D + d;
    const float* w = p.q_weight + out_row * p.q_weight_stride[0];
    for (int c = 0; c < p.channels; ++c) wq[static_cast<int64_t>(c) * ld + d] = w[c * p.q_weight_stride[1]];
    bq[d] = p.q_bias[out_row * p.q_bias_stride];
  }
}

// The head's query projection: read in place when q_weight is stored transposed, (C, H·D) row-major, and D is a
// multiple of the vector width (so whole vectors stay inside the head's columns); otherwise packed into the
// workspace. Packing costs C·D strided copies per (batch, head), next to a projection of only Nq·C·D FMAs: with the
// weight in place, the 7→4 shrinks (Nq = 16) measured 1.44x faster at LeViT-256's C = 384, D = 32 and 1.12x at
// 128S's C = 256, D = 16 (batch 16, 1 thread, AVX2); 1.27x and 1.12x at batch 1.
template <class V>
QueryWeight query_weight(const Problem& p, const Plan& plan, int h, const Buffers<V>& buf) {
  const int64_t first_row = static_cast<int64_t>(h) * p.key_dim;
  if (p.q_weight_stride[0] == 1 && p.q_bias_stride == 1 && p.key_dim % V::kWidth == 0)
    return {p.q_weight + first_row, p.q_weight_stride[1], p.q_bias + first_row};
  pack_query_weight<V>(p, plan, h, buf.wq, buf.bq);
  return {buf.wq, plan.key_dim_padded, buf.bq};
}

// Position of query i on the key grid.
struct GridPoint {
  int y, x;
};
template <class V>
inline GridPoint query_point(const Problem& p, int i) {
  const int cols = p.query_w();
  return {i / cols * p.stride, i % cols * p.stride};
}

// shrink: buf.q[i] = x[b, token(q0 + i)] · wᵀ + bias for the tile's rows.
template <class V, class Tile>
void project_queries(const Problem& p, const Plan& plan, const Buffers<V>& buf, const QueryWeight& wq, int b, int q0,
                     int rows) {
  constexpr int W = V::kWidth;
  const int ld = plan.key_dim_padded, width = (p.key_dim + W - 1) / W * W;
  const float* x_rows[kMaxTileRows + kMaxRegisterRows];
  row_pointers(rows, [&](int i) {
    const GridPoint g = query_point<V>(p, q0 + i);
    return p.x + b * p.x_stride[0] + static_cast<int64_t>(g.y * p.grid_w + g.x) * p.x_stride[1];
  }, x_rows);
  multiply<V, Tile>(rows, x_rows, p.x_stride[2], wq.w, wq.ld, width, p.channels,
              [&](auto& acc, int r0, int valid, int col, int) {
                for (int r = 0; r < valid; ++r)
                  for (int c = 0; c < vecs_of(acc); ++c)  // whole vectors (see QueryWeight)
                    V::store(buf.q + (r0 + r) * ld + col + c * W, acc[r][c] + V::load(wq.b + col + c * W));
              });
}

// scores[i][·] = bias of query q0 + i against every key, -inf on the padded keys (so they weigh 0 and never win
// the row maximum), and row_max[i] = -inf.
template <class V>
void fill_bias(const Problem& p, const Plan& plan, const Buffers<V>& buf, int q0, int rows) {
  constexpr int W = V::kWidth;
  const int Rw = p.grid_w, nk = p.num_keys();
  const float neg_inf = -std::numeric_limits<float>::infinity();
  for (int i = 0; i < rows; ++i) {
    const GridPoint g = query_point<V>(p, q0 + i);
    float* dst = buf.scores + static_cast<int64_t>(i) * plan.score_ld;
    for (int yk = 0; yk < p.grid_h; ++yk) {
      const float* src = buf.bias + static_cast<int64_t>(std::abs(g.y - yk)) * plan.bias_ld + (Rw - 1 - g.x);
      // Whole vectors: the overrun lands in the next key row (rewritten next) or the padding (score_ld slack).
      for (int t = 0; t < Rw; t += W) V::store(dst + yk * Rw + t, V::load(src + t));
    }
    std::fill(dst + nk, dst + plan.keys_padded, neg_inf);
    std::fill(buf.row_max + i * kMaxWidth, buf.row_max + (i + 1) * kMaxWidth, neg_inf);
  }
}

// Stable softmax of each score row in place (unnormalised) and 1/sum per row, shifted by the row maximum the
// score multiply kept. Padded keys hold -inf and weigh 0; a row whose scores are all -inf gives NaN, as
// torch.softmax does. Rows are walked kMaxWidth floats (kU vectors, independent dependency chains) at a time:
// keys_padded is a multiple of it.
template <class V>
void softmax_rows(const Plan& plan, const Buffers<V>& buf, int rows) {
  constexpr int W = V::kWidth, kU = kMaxWidth / W;
  const int n = plan.keys_padded;
  for (int i = 0; i < rows; ++i) {
    float* row = buf.scores + static_cast<int64_t>(i) * plan.score_ld;
    V vmax = V::load(buf.row_max + i * kMaxWidth);
    for (int u = 1; u < kU; ++u) vmax = V::max(V::load(buf.row_max + i * kMaxWidth + u * W), vmax);
    const V shift = V::set1(V::reduce_max(vmax));
    V vsum[kU];
    for (int u = 0; u < kU; ++u) vsum[u] = V::zero();
    for (int j = 0; j < n; j += kMaxWidth)
      for (int u = 0; u < kU; ++u) {
        const V e = simd::exp2_nonpositive(V::load(row + j + u * W) - shift);
        V::store(row + j + u * W, e);
        vsum[u] = vsum[u] + e;
      }
    for (int u = 1; u < kU; ++u) vsum[0] = vsum[0] + vsum[u];
    buf.row_scale[i] = 1.0f / V::reduce_add(vsum[0]);
  }
}

template <class V, class Tile>
void attend_tile(const Problem& p, const Plan& plan, const Buffers<V>& buf, const QueryWeight& wq, int b, int h, int q0,
                 int rows) {
  constexpr int W = V::kWidth;
  const int nq = p.num_queries(), nk = p.num_keys();
  const int64_t sld = plan.score_ld;

  // Queries: projected into the workspace (shrink) or read in place.
  const float* q_base = buf.q;
  int64_t q_row_step = plan.key_dim_padded, q_step = 1;
  if (p.shrink()) {
    project_queries<V, Tile>(p, plan, buf, wq, b, q0, rows);
  } else {
    q_base = p.q.row(b, h, q0);
    q_row_step = p.q.stride[2];
    q_step = p.q.stride[3];
  }
  const float* a_rows[kMaxTileRows + kMaxRegisterRows];
  row_pointers(rows, [&](int i) { return q_base + i * q_row_step; }, a_rows);

  fill_bias<V>(p, plan, buf, q0, rows);
  const V scale = V::set1(p.scale * kLog2e);
  multiply<V, Tile>(rows, a_rows, q_step, buf.kt, plan.keys_padded, plan.keys_padded, p.key_dim,
              [&](auto& acc, int r0, int valid, int col, int) {
                for (int r = 0; r < valid; ++r) {
                  // Lane-wise running maximum: padded keys give -inf (their kᵀ is 0, their bias -inf) unless q
                  // holds inf or NaN, and then the reference's row is NaN too.
                  float* m = buf.row_max + (r0 + r) * kMaxWidth + col % kMaxWidth;
                  V vmax = V::load(m);
                  for (int c = 0; c < vecs_of(acc); ++c) {  // keys_padded is a multiple of W: whole vectors
                    float* s = buf.scores + (r0 + r) * sld + col + c * W;
                    const V score = V::fma(acc[r][c], scale, V::load(s));
                    V::store(s, score);
                    vmax = V::max(score, vmax);
                  }
                  V::store(m, vmax);
                }
              });

  softmax_rows<V>(plan, buf, rows);

  const float* v_rows = buf.v;
  const int64_t v_ld = plan.value_dim_padded;
  const int64_t out_ld = static_cast<int64_t>(p.heads) * p.value_dim;
  float* out = p.out + (static_cast<int64_t>(b) * nq + q0) * out_ld + static_cast<int64_t>(h) * p.value_dim;
  row_pointers(rows, [&](int i) { return buf.scores + i * sld; }, a_rows);
  multiply<V, Tile>(rows, a_rows, 1, v_rows, v_ld, p.value_dim, nk, [&](auto& acc, int r0, int valid, int col, int cols) {
    for (int r = 0; r < valid; ++r) {
      const V row_scale = V::set1(buf.row_scale[r0 + r]);
      float* o = out + (r0 + r) * out_ld + col;
      for (int c = 0; c < vecs_of(acc); ++c) {
        const V y = acc[r][c] * row_scale;
        store_lanes(o + c * W, simd::apply(p.activation, y), cols - c * W);
      }
    }
  });
}

template <class V, class Tile>
void run_items(const Problem& p, const Plan& plan, int64_t begin, int64_t end, float* workspace) {
  const Buffers<V> buf{workspace + plan.kt,        workspace + plan.v,       workspace + plan.bias,
                       workspace + plan.scores,    workspace + plan.row_scale, workspace + plan.row_max,
                       workspace + plan.q,         workspace + plan.wq,      workspace + plan.bq};
  const int nq = p.num_queries();
  int head = -1, batch = -1;
  QueryWeight wq;
  for (int64_t item = begin; item < end; ++item) {
    const int b = static_cast<int>(item / (static_cast<int64_t>(p.heads) * plan.tiles));
    const int h = static_cast<int>(item / plan.tiles % p.heads);
    const int tile = static_cast<int>(item % plan.tiles);
    if (h != head || b != batch) {
      if (h != head) {
        mirror_bias<V>(p, plan, h, buf.bias);
        if (p.shrink()) wq = query_weight<V>(p, plan, h, buf);
      }
      pack_keys_transposed<V>(p, plan, b, h, buf.kt);
      pack_values<V>(p, plan, b, h, buf.v);
      head = h;
      batch = b;
    }
    const int q0 = tile * plan.tile_rows;
    attend_tile<V, Tile>(p, plan, buf, wq, b, h, q0, std::min(plan.tile_rows, nq - q0));
  }
}

// The kernel table of vector type V with an R × NV register tile (kept in L1-friendly blocks: see multiply()).
template <class V, int R, int NV>
constexpr Kernels make_kernels() {
  static_assert(R <= kMaxRegisterRows && kMaxTileRows % R == 0, "query tiles must hold whole register tiles");
  return Kernels{Geometry{R, NV}, &run_items<V, TileShape<R, NV>>};
}

}  // namespace levit::attention
