// The ISA-independent work plan of the attention kernels: query tiling and workspace layout.
#include <algorithm>

#include "attention/attention_kernel.h"

namespace levit::attention {
namespace {

int round_up(int n, int multiple) { return (n + multiple - 1) / multiple * multiple; }
size_t round_up(size_t n, size_t multiple) { return (n + multiple - 1) / multiple * multiple; }

// Score tile budget: the tile stays in L1 next to a slice of the packed kᵀ it is multiplied with.
constexpr int kScoreTileBytes = 24 * 1024;
}  // namespace

Plan make_plan(const Problem& p, const Geometry& tile) {
  Plan plan;
  const int nq = p.num_queries(), nk = p.num_keys();
  plan.keys_padded = round_up(nk, kMaxWidth);
  plan.key_dim_padded = round_up(p.key_dim, kMaxWidth);
  plan.value_dim_padded = round_up(p.value_dim, kMaxWidth);
  plan.score_ld = plan.keys_padded + kMaxWidth;  // slack: bias rows are copied in whole vectors
  plan.bias_ld = 2 * p.grid_w - 1 + kMaxWidth;

  const int row_bytes = plan.score_ld * static_cast<int>(sizeof(float));
  const int max_rows = std::clamp(kScoreTileBytes / row_bytes, 12, kMaxTileRows);
  const int tiles = (nq + max_rows - 1) / max_rows;
  // Balanced tiles, each a whole number of register tiles (no register-tile rows computed and dropped).
  plan.tile_rows = std::min(round_up((nq + tiles - 1) / tiles, tile.rows), nq);
  plan.tiles = (nq + plan.tile_rows - 1) / plan.tile_rows;
  plan.items = static_cast<int64_t>(p.heads) * p.batch * plan.tiles;

  size_t next = 0;
  auto take = [&next](size_t floats) {
    const size_t at = next;
    next += round_up(floats, size_t{16});  // 64-byte aligned buffers
    return at;
  };
  const size_t rows = static_cast<size_t>(plan.tile_rows);
  plan.kt = take(static_cast<size_t>(p.key_dim) * plan.keys_padded);
  plan.v = take(static_cast<size_t>(nk) * plan.value_dim_padded);
  plan.bias = take(static_cast<size_t>(p.grid_h) * plan.bias_ld);
  plan.scores = take(rows * plan.score_ld);
  plan.row_scale = take(rows);
  plan.row_max = take(rows * kMaxWidth);
  if (p.shrink()) {
    plan.q = take(rows * plan.key_dim_padded);
    plan.wq = take(static_cast<size_t>(p.channels) * plan.key_dim_padded);
    plan.bq = take(plan.key_dim_padded);
  }
  plan.workspace_floats = next;
  return plan;
}

}  // namespace levit::attention
