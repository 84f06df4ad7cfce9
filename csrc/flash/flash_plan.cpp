// The ISA-independent work plan of the flash attention kernel: query tiles, key blocks and the workspace layout.
#include <algorithm>

#include "flash/flash_kernel.h"

namespace levit::flash {
namespace {

int ceil_div(int64_t a, int64_t b) { return static_cast<int>((a + b - 1) / b); }
int round_up(int n, int multiple) { return ceil_div(n, multiple) * multiple; }
size_t round_up(size_t n, size_t multiple) { return (n + multiple - 1) / multiple * multiple; }

// Queries per item: three column blocks of the AVX2 register tile (2 vectors of 8). Tiles are balanced to a
// multiple of those 16 lanes (N = 197: four tiles of 48 and one of 5, rather than five of 40 = 2.5 blocks).
constexpr int kTileRows = 48;
constexpr int kLaneMultiple = 16;
// Keys per block of the online softmax: the per-block work (rescaling oᵀ, the exp of the running-max change) is
// spread over enough keys. sᵀ (240 × 48 floats, 45 KiB) outgrows Zen 3's 32 KiB L1d, yet blocks of 60 and 120 keys
// (which fit) measured 1-7% slower (scripts/bench_flash_variants.sh, AVX2, 1 thread): the kernel is not bound by
// L1 misses. A multiple of the register tile's 6 rows.
constexpr int kKeyBlock = 240;
static_assert(kKeyBlock % kPanelRows == 0, "key blocks must start at whole key panels");
// Fewer items than this many per thread and the tiles shrink (down to one vector of lanes) to balance the threads.
constexpr int kItemsPerThread = 4;

}  // namespace

Plan make_plan(const Problem& p, int threads) {
  Plan plan;
  const int nq = std::max(p.num_queries, 1);
  const int64_t pairs = static_cast<int64_t>(p.batch) * p.heads;
  int tiles = ceil_div(nq, kTileRows);
  const int64_t wanted = static_cast<int64_t>(kItemsPerThread) * std::max(threads, 1);
  if (pairs * tiles < wanted) tiles = std::min(ceil_div(nq, kLaneMultiple), ceil_div(wanted, std::max<int64_t>(pairs, 1)));
  plan.tile_rows = std::min(round_up(ceil_div(nq, tiles), kLaneMultiple), nq);
  plan.tiles = p.num_queries == 0 ? 0 : ceil_div(nq, plan.tile_rows);
  plan.items = pairs * plan.tiles;
  plan.key_block = std::max(1, std::min(kKeyBlock, p.num_keys));
  plan.rows_padded = round_up(plan.tile_rows, attention::kMaxWidth);

  size_t next = 0;
  auto take = [&next](size_t floats) {
    const size_t at = next;
    next += round_up(floats, size_t{16});  // 64-byte aligned buffers
    return at;
  };
  const size_t rows = static_cast<size_t>(plan.rows_padded), block = static_cast<size_t>(plan.key_block);
  plan.qt = take(static_cast<size_t>(p.key_dim) * rows);
  plan.ot = take(static_cast<size_t>(p.value_dim) * rows);
  plan.scores = take(block * rows);
  plan.bias = take(p.bias != nullptr ? block * rows : 0);
  plan.row_max = take(rows);
  plan.block_max = take(rows);
  plan.row_sum = take(rows);
  plan.rescale = take(rows);
  const size_t key_groups = static_cast<size_t>(ceil_div(p.num_keys, kPanelRows));
  const size_t value_groups = static_cast<size_t>(ceil_div(p.value_dim, kPanelRows));
  plan.key_panels = take(key_groups * kPanelRows * static_cast<size_t>(p.key_dim));
  plan.value_panels = take(value_groups * kPanelRows * static_cast<size_t>(p.num_keys));
  plan.workspace_floats = next;
  return plan;
}

}  // namespace levit::flash
