// The flash attention kernel as a template over a SIMD vector type V (csrc/simd). Included by the per-ISA
// translation units after their target pragma; everything is a template over V, so code compiled for one ISA never
// shares a symbol with another's (see common/kernel_prelude.h).
//
// Queries lie along the vector lanes: the scores of a block are kept transposed, sᵀ[j][i] (key j, query i), so
// every softmax reduction over keys is a lane-wise max or sum down the block's rows (no horizontal reduction), the
// per-query rescale of the accumulator is a vector multiply, and k and v are the broadcast operands, packed once per
// (batch, head) into panels of one register tile's rows (see pack_keys, pack_values) that every query tile of the
// pair reuses: one pointer walks a tile's broadcasts, whatever the strides of q, k and v (packed-qkv views).
// Measured on Zen 3 (AVX2, 1 thread, scripts/bench_flash_variants.sh, against reading k and v in place through six
// row pointers, which spilled two of them to the stack in the scores loop): N = 3136 +3–5%, N = 784 +1–2%,
// N = 197 (6 heads, batch 16) +1%. Per work item (batch b, head h, query tile):
//   qᵀ[d][i] = scale·log2(e)·q[i][d]                  packed once per item: scores in the base-2 domain
//   for each block of keys j0 … j0+nb−1:
//     sᵀ[j][i] = k_j · qᵀ[·][i] (+ bias[i][j0+j])      register-tiled multiply; lane-wise block maxima on the way
//     m' = max(m, block max); pᵀ = 2^(sᵀ − m')          online softmax: the running max m, running sum l,
//     l = l·2^(m − m') + Σ_j pᵀ[j]                      and the accumulator rescaled by 2^(m − m')
//     oᵀ[c][i] = oᵀ[c][i]·2^(m − m') + Σ_j v[j][c]·pᵀ[j][i]   register-tiled multiply
//   out[i][c] = act(oᵀ[c][i] / l[i])                   token-major (B, Nq, H·Dv)
// The workspace holds qᵀ, oᵀ, one block of scores (and of the bias) and the pair's panels:
// O(tile·(D + Dv + block) + Nk·(D + Dv)).
#pragma once
#include "attention/attention_tiles.h"
#include "flash/flash_tiles.h"
#include "common/kernel_prelude.h"
#include "flash/flash_kernel.h"
#include "simd/activations.h"
#include "simd/exp.h"

namespace levit::flash {

using attention::rows_of;
using attention::vecs_of;

constexpr float kLog2e = 1.44269504088896341f;

// Register tile of both multiplies. With 16 registers, 6 rows × 2 vectors (12 accumulators, 2 loaded vectors, one
// broadcast) needs 8 loads per 12 FMAs where the biased kernels' 4 × 3 needs 10 (GCC re-reads its third B vector
// from memory for each row: all 16 registers are taken). Measured on Zen 3 (AVX2, 1 thread, against SDPA, together
// with the exp2 below): N = 3136 1.01× → 1.09×, N = 197 (6 heads, batch 16) 1.07× → 1.18×. 32 registers: 6 × 4.
template <class V>
struct FlashTile {
  static constexpr int kRows = kPanelRows;
  static constexpr int kVecs = V::kRegisters >= 32 ? 4 : 2;
};

// Thread-private buffers, carved from the workspace by the plan's offsets. Rows are plan.rows_padded floats.
struct Buffers {
  float* qt;         // (D, rows): scale·qᵀ of the tile, zero in the padding lanes
  float* ot;         // (Dv, rows): unnormalised output, transposed
  float* scores;     // (key_block, rows): sᵀ, then pᵀ, of the current block
  float* bias;       // (key_block, rows): the bias of the current block, transposed
  float* row_max;    // (rows): running maxima m
  float* block_max;  // (rows): m' = max(m, this block's scores)
  float* row_sum;    // (rows): running sums l
  float* rescale;    // (rows): 2^(m − m'); at the end 1 / l
  float* key_panels;    // k of the current (b, h) as panels, see pack_keys
  float* value_panels;  // v of the current (b, h) as panels, see pack_values
};

template <class V>
void pack_queries(const Problem& p, const Plan& plan, const Buffers& buf, int b, int h, int q0, int rows) {
  const int rp = plan.rows_padded;
  const int64_t step = p.q.stride[3];
  const float scale = p.scale * kLog2e;
  for (int d = 0; d < p.key_dim; ++d) std::fill(buf.qt + static_cast<int64_t>(d) * rp + rows, buf.qt + (d + 1) * rp,
                                                0.0f);
  for (int i = 0; i < rows; ++i) {
    const float* row = p.q.row(b, h, q0 + i);
    for (int d = 0; d < p.key_dim; ++d) buf.qt[static_cast<int64_t>(d) * rp + i] = scale * row[d * step];
  }
}

// buf.bias[j][i] = log2(e)·bias[b, h, q0 + i, j0 + j]; 0 in the padding lanes.
template <class V>
void load_bias_block(const Problem& p, const Plan& plan, const Buffers& buf, int b, int h, int q0, int rows, int j0,
                     int nb) {
  const int rp = plan.rows_padded;
  const int64_t* s = p.bias_stride;
  const float* base = p.bias + b * s[0] + h * s[1] + static_cast<int64_t>(j0) * s[3];
  for (int i = 0; i < rows; ++i) {
    const float* row = base + static_cast<int64_t>(q0 + i) * s[2];
    for (int j = 0; j < nb; ++j) buf.bias[static_cast<int64_t>(j) * rp + i] = kLog2e * row[j * s[3]];
  }
  for (int j = 0; j < nb; ++j) std::fill(buf.bias + static_cast<int64_t>(j) * rp + rows, buf.bias + (j + 1) * rp, 0.0f);
}

// kp[g][d][r] = k[b, h, kPanelRows·g + r, d]: key groups of one register tile as contiguous panels, zero past Nk.
template <class V>
void pack_keys(const Problem& p, float* kp, int b, int h) {
  const int groups = (p.num_keys + kPanelRows - 1) / kPanelRows, dim = p.key_dim;
  const int64_t step = p.k.stride[3];
  std::fill(kp + static_cast<int64_t>(p.num_keys / kPanelRows) * dim * kPanelRows,
            kp + static_cast<int64_t>(groups) * dim * kPanelRows, 0.0f);
  for (int j = 0; j < p.num_keys; ++j) {
    const float* row = p.k.row(b, h, j);
    float* out = kp + static_cast<int64_t>(j / kPanelRows) * dim * kPanelRows + j % kPanelRows;
    for (int d = 0; d < dim; ++d) out[d * kPanelRows] = row[d * step];
  }
}

// vp[g][j][r] = v[b, h, j, kPanelRows·g + r]: value columns in groups of one register tile, zero past Dv.
template <class V>
void pack_values(const Problem& p, float* vp, int b, int h) {
  const int groups = (p.value_dim + kPanelRows - 1) / kPanelRows;
  const int64_t step = p.v.stride[3], group_stride = static_cast<int64_t>(p.num_keys) * kPanelRows;
  for (int j = 0; j < p.num_keys; ++j) {
    const float* row = p.v.row(b, h, j);
    for (int g = 0; g < groups; ++g) {
      float* out = vp + g * group_stride + static_cast<int64_t>(j) * kPanelRows;
      const int c0 = g * kPanelRows, n = std::min(kPanelRows, p.value_dim - c0);
      for (int r = 0; r < n; ++r) out[r] = row[(c0 + r) * step];
      for (int r = n; r < kPanelRows; ++r) out[r] = 0.0f;
    }
  }
}

// sᵀ of keys [j0, j0 + nb) (j0 a multiple of kPanelRows) against the tile's `lanes` query lanes (rows rounded up
// to whole vectors); block_max starts as row_max and ends as m'.
template <class V>
void block_scores(const Problem& p, const Plan& plan, const Buffers& buf, int j0, int nb, int lanes) {
  constexpr int W = V::kWidth;
  const int rp = plan.rows_padded;
  std::copy(buf.row_max, buf.row_max + lanes, buf.block_max);
  const bool biased = p.bias != nullptr;
  const int64_t panel = static_cast<int64_t>(p.key_dim) * kPanelRows;
  panel_multiply<V, FlashTile<V>, true>((nb + kPanelRows - 1) / kPanelRows, buf.key_panels + j0 / kPanelRows * panel,
                                        panel, p.key_dim, buf.qt, rp, lanes, [&](auto& acc, int g, int col) {
    const int r0 = g * kPanelRows, valid = std::min(kPanelRows, nb - r0);
    for (int c = 0; c < vecs_of(acc); ++c) {  // lanes is a multiple of W: whole vectors
      const int64_t at = col + c * W;
      V vmax = V::load(buf.block_max + at);
      for (int r = 0; r < rows_of(acc); ++r) {
        if (r == valid) break;
        const int64_t off = static_cast<int64_t>(r0 + r) * rp + at;
        const V score = biased ? acc[r][c] + V::load(buf.bias + off) : acc[r][c];
        V::store(buf.scores + off, score);
        vmax = V::max(score, vmax);  // a NaN score leaves the max alone; its own weight is NaN
      }
      V::store(buf.block_max + at, vmax);
    }
  });
}

// pᵀ = 2^(sᵀ − m') in place; l = l·2^(m − m') + Σ_j pᵀ[j]; rescale = 2^(m − m'); m = m'. Where every score so far
// is -inf (m' = -inf, a masked prefix of the row) the shift is -FLT_MAX instead, so the weights are 0 rather than
// NaN; a row masked all through ends with l = 0 and 0/0 = NaN, as torch.softmax gives.
template <class V>
void online_softmax(const Plan& plan, const Buffers& buf, int nb, int lanes) {
  constexpr int W = V::kWidth;
  const int rp = plan.rows_padded;
  const V lowest = V::set1(-std::numeric_limits<float>::max());
  for (int at = 0; at < lanes; at += W) {
    const V m_new = V::load(buf.block_max + at);
    const V shift = V::max(lowest, m_new);
    V sum0 = V::zero(), sum1 = V::zero();  // two chains: the adds do not wait on each other
    float* s = buf.scores + at;
    int j = 0;
    for (; j + 2 <= nb; j += 2, s += 2 * rp) {
      const V e0 = simd::exp2_nonpositive(V::load(s) - shift), e1 = simd::exp2_nonpositive(V::load(s + rp) - shift);
      V::store(s, e0);
      V::store(s + rp, e1);
      sum0 = sum0 + e0;
      sum1 = sum1 + e1;
    }
    if (j < nb) {
      const V e = simd::exp2_nonpositive(V::load(s) - shift);
      V::store(s, e);
      sum0 = sum0 + e;
    }
    const V alpha = simd::exp2_nonpositive(V::load(buf.row_max + at) - shift);
    V::store(buf.rescale + at, alpha);
    V::store(buf.row_sum + at, V::fma(V::load(buf.row_sum + at), alpha, sum0 + sum1));
    V::store(buf.row_max + at, m_new);
  }
}

// oᵀ[c][i] = oᵀ[c][i]·rescale[i] + Σ_j v[j0 + j][c]·pᵀ[j][i] (first block: oᵀ = the sum).
template <class V>
void accumulate_values(const Problem& p, const Plan& plan, const Buffers& buf, int j0, int nb, int lanes,
                       bool first) {
  constexpr int W = V::kWidth;
  const int rp = plan.rows_padded;
  const int64_t group_stride = static_cast<int64_t>(p.num_keys) * kPanelRows;
  panel_multiply<V, FlashTile<V>, false>((p.value_dim + kPanelRows - 1) / kPanelRows,
                                         buf.value_panels + static_cast<int64_t>(j0) * kPanelRows, group_stride, nb,
                                         buf.scores, rp, lanes, [&](auto& acc, int g, int col) {
    const int c0 = g * kPanelRows, valid = std::min(kPanelRows, p.value_dim - c0);
    for (int r = 0; r < rows_of(acc); ++r) {
      if (r == valid) break;
      float* o = buf.ot + static_cast<int64_t>(c0 + r) * rp + col;
      for (int c = 0; c < vecs_of(acc); ++c) {
        const V y = first ? acc[r][c] : V::fma(V::load(o + c * W), V::load(buf.rescale + col + c * W), acc[r][c]);
        V::store(o + c * W, y);
      }
    }
  });
}

// out[b, q0 + i, h·Dv + c] = act(oᵀ[c][i] / l[i]).
template <class V>
void store_output(const Problem& p, const Plan& plan, const Buffers& buf, int b, int h, int q0, int rows) {
  constexpr int W = V::kWidth;
  const int rp = plan.rows_padded, dv = p.value_dim;
  for (int i = 0; i < rows; ++i) buf.rescale[i] = 1.0f / buf.row_sum[i];
  const int64_t out_ld = static_cast<int64_t>(p.heads) * dv;
  float* out = p.out + (static_cast<int64_t>(b) * p.num_queries + q0) * out_ld + static_cast<int64_t>(h) * dv;
  for (int i = 0; i < rows; ++i) {
    float* o = out + i * out_ld;
    const float inv = buf.rescale[i];
    for (int c = 0; c < dv; ++c) o[c] = buf.ot[static_cast<int64_t>(c) * rp + i] * inv;
    if (p.activation != Activation::kNone)
      for (int c = 0; c < dv; c += W) {
        const int n = std::min(W, dv - c);
        attention::store_lanes(o + c, simd::apply(p.activation, V::load_partial(o + c, n)), n);
      }
  }
}

template <class V>
void attend_tile(const Problem& p, const Plan& plan, const Buffers& buf, int b, int h, int q0, int rows) {
  constexpr int W = V::kWidth;
  const int lanes = (rows + W - 1) / W * W;
  pack_queries<V>(p, plan, buf, b, h, q0, rows);
  std::fill(buf.row_max, buf.row_max + lanes, -std::numeric_limits<float>::infinity());
  std::fill(buf.row_sum, buf.row_sum + lanes, 0.0f);
  for (int j0 = 0; j0 < p.num_keys; j0 += plan.key_block) {
    const int nb = std::min(plan.key_block, p.num_keys - j0);
    if (p.bias != nullptr) load_bias_block<V>(p, plan, buf, b, h, q0, rows, j0, nb);
    block_scores<V>(p, plan, buf, j0, nb, lanes);
    online_softmax<V>(plan, buf, nb, lanes);
    accumulate_values<V>(p, plan, buf, j0, nb, lanes, j0 == 0);
  }
  store_output<V>(p, plan, buf, b, h, q0, rows);
}

template <class V>
void run_items(const Problem& p, const Plan& plan, int64_t begin, int64_t end, float* workspace) {
  const Buffers buf{workspace + plan.qt,         workspace + plan.ot,          workspace + plan.scores,
                    workspace + plan.bias,       workspace + plan.row_max,     workspace + plan.block_max,
                    workspace + plan.row_sum,    workspace + plan.rescale,     workspace + plan.key_panels,
                    workspace + plan.value_panels};
  int64_t packed = -1;  // the (batch, head) pair whose panels the workspace holds
  for (int64_t item = begin; item < end; ++item) {
    const int64_t pair = item / plan.tiles;
    const int b = static_cast<int>(pair / p.heads), h = static_cast<int>(pair % p.heads);
    if (pair != packed) {
      pack_keys<V>(p, buf.key_panels, b, h);
      pack_values<V>(p, buf.value_panels, b, h);
      packed = pair;
    }
    const int q0 = static_cast<int>(item % plan.tiles) * plan.tile_rows;
    attend_tile<V>(p, plan, buf, b, h, q0, std::min(plan.tile_rows, p.num_queries - q0));
  }
}

}  // namespace levit::flash
