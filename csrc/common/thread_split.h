// How a GEMM-shaped output (m rows × n columns, computed in register tiles of mr rows × nr-column panels) is divided
// over the threads: one share per thread, a block of whole rows × whole panels, sized so that the busiest thread
// has as little work as possible. The ops then walk their share in cache-sized row blocks (their own business).
//
// Why not just many small items handed out by at::parallel_for: at batch 1 the LeViT GEMMs have 16, 49 or 196
// rows, i.e. 2, 5 or 17 row tiles of the AVX-512 kernel's mr = 12 when this was written (6 since), and splitting
// whole row tiles over 2 threads left one thread 12 of 16 rows, 36 of 49 or 108 of 196 (75%, 73%, 55% of the work).
// Splitting the panels instead (N = 128…1280 was 4-40 panels of 32) or the rows at any row boundary gives both
// threads the same work, whatever the tile; the panel split also halves the
// weight bytes each thread streams, which at batch 1 (more weight than activation) is most of the traffic.
#pragma once
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <limits>

namespace levit {

// Below this many multiply-adds an op runs on the calling thread: an empty at::parallel_for over 2 items costs
// 0.9-1.2 µs on 2 threads of the AMD EPYC Zen 4 (medians of 2000-call loops, threads spinning between calls),
// about what one core does in 64K fp32 multiply-adds at the AVX-512 kernels' ~90 GFLOP/s.
constexpr int64_t kMinParallelMacs = 64 * 1024;

inline int64_t threads_for(int64_t macs) { return macs < kMinParallelMacs ? 1 : at::get_num_threads(); }

// Rows [m0, m1) × columns [n0, n1) of the output; n0 is a multiple of the panel width.
struct Share {
  int64_t m0, m1, n0, n1;
};

class ThreadSplit {
 public:
  // `prefer_rows`: on equal cost, split rows rather than panels (the convolution's gather is repeated per column
  // share; the GEMM's weight panels are read once per row share).
  ThreadSplit(int64_t m, int64_t n, int mr, int nr, int64_t threads, bool allow_columns = true,
              bool prefer_rows = false)
      : m_(m), n_(n), mr_(mr), nr_(nr) {
    const int64_t panels = (n + nr - 1) / nr;
    threads = std::max<int64_t>(1, std::min(threads, m * panels));
    double best = std::numeric_limits<double>::infinity();
    for (int64_t rows = 1; rows <= std::min(threads, m); ++rows) {
      const int64_t cols = allow_columns ? std::min(threads / rows, panels) : 1;
      const bool aligned = aligned_cost(rows) <= even_cost(rows);
      const double row_cost = aligned ? aligned_cost(rows) : even_cost(rows);
      const double cost = row_cost * static_cast<double>((panels + cols - 1) / cols);
      // Equal cost: the split found first (the most panel shares), unless rows are preferred.
      const bool better = cost < best || (cost == best && prefer_rows && rows > row_parts_);
      if (better) {
        best = cost;
        row_parts_ = rows, col_parts_ = cols, aligned_ = aligned;
      }
    }
    panels_ = panels;
  }

  int64_t shares() const { return row_parts_ * col_parts_; }

  Share share(int64_t i) const {
    const int64_t r = i / col_parts_, c = i % col_parts_;
    return {row_bound(r), row_bound(r + 1), std::min(n_, c * panels_ / col_parts_ * nr_),
            std::min(n_, (c + 1) * panels_ / col_parts_ * nr_)};
  }

  // f(share) for every share, one per thread (no parallel region for a single share).
  template <class F>
  void run(const F& f) const {
    if (shares() == 1) return f(share(0));
    at::parallel_for(0, shares(), 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) f(share(i));
    });
  }

 private:
  // The cost of r rows per panel: the rows, plus two rows' worth per register tile (its accumulators' loads and
  // stores and the panel's reread), so a short last tile is not free.
  double rows_cost(int64_t r) const { return static_cast<double>(r + 2 * ((r + mr_ - 1) / mr_)); }
  // Row parts of whole register tiles (only the last share's last tile short) ...
  int64_t aligned_rows(int64_t parts) const { return ((m_ + mr_ - 1) / mr_ + parts - 1) / parts * mr_; }
  double aligned_cost(int64_t parts) const { return rows_cost(std::min(m_, aligned_rows(parts))); }
  // ... or rows split evenly at any row (every share may end on a short tile).
  double even_cost(int64_t parts) const { return rows_cost((m_ + parts - 1) / parts); }

  int64_t row_bound(int64_t r) const {
    return aligned_ ? std::min(m_, r * aligned_rows(row_parts_)) : r * m_ / row_parts_;
  }

  int64_t m_, n_, mr_, nr_, panels_ = 1;
  int64_t row_parts_ = 1, col_parts_ = 1;
  bool aligned_ = true;
};

// Rows [m0, m1) as blocks of at most about `target` rows, whole register tiles of mr but the last: f(b0, b1).
template <class F>
void for_each_row_block(int64_t m0, int64_t m1, int64_t target, int64_t mr, const F& f) {
  const int64_t rows = m1 - m0, blocks = (rows + target - 1) / target;
  if (rows <= 0) return;
  const int64_t per = ((rows + blocks - 1) / blocks + mr - 1) / mr * mr;
  for (int64_t b0 = m0; b0 < m1; b0 += per) f(b0, std::min(m1, b0 + per));
}

}  // namespace levit
