// The flash kernel's register tile alone (csrc/flash/flash_tiles.h, AVX2, 1 thread, operands resident in L1): the
// ceiling its two multiplies could reach inside the kernel. Shapes of one key block of 240 against a 48-query tile:
// the scores multiply (40 key panels, depth D = 64) and the p·v multiply (11 value panels, depth 240). Prints the
// best of 30 rounds (thread CPU time) per shape.
//   g++ -O3 -std=c++17 -march=x86-64 -mtune=generic -Icsrc benchmarks/flash_variants/tile_peak.cpp -o tile_peak
#include <time.h>

#include <algorithm>
#include <cstdio>

#include "common/kernel_prelude.h"
#include "flash/flash_kernel.h"

#pragma GCC target("avx2,fma")
#include "simd/vec_avx2.h"
#include "attention/attention_tiles.h"
#include "flash/flash_tiles.h"

namespace {

using V = levit::simd::VecAvx2;
struct Tile {
  static constexpr int kRows = levit::flash::kPanelRows, kVecs = 2;
};

double thread_seconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

struct Shape {
  const char* name;
  int panels, depth;
};
constexpr Shape kShapes[] = {{"scores (depth 64)", 40, 64}, {"p·v (depth 240)", 11, 240}};

alignas(64) float a[240 * 6 * 40], b[240 * 48], c[6 * 48];

}  // namespace

int main() {
  std::fill(std::begin(a), std::end(a), 1e-3f);
  std::fill(std::begin(b), std::end(b), 2e-3f);
  constexpr int kLanes = 48, kCalls = 100;
  for (const auto [name, panels, depth] : kShapes) {
    double best = 1e9;
    for (int round = 0; round < 30; ++round) {
      const double t0 = thread_seconds();
      for (int call = 0; call < kCalls; ++call)
        levit::flash::panel_multiply<V, Tile, true>(panels, a, int64_t{depth} * 6, depth, b, kLanes, kLanes,
                                                    [&](auto& acc, int, int col) {
          for (int r = 0; r < levit::attention::rows_of(acc); ++r)
            for (int v = 0; v < levit::attention::vecs_of(acc); ++v) V::store(c + r * kLanes + col + v * 8, acc[r][v]);
        });
      best = std::min(best, thread_seconds() - t0);
    }
    const double flops = 2.0 * kCalls * panels * 6 * kLanes * depth;
    std::printf("%-18s %.1f GFLOP/s\n", name, flops / best / 1e9);
  }
}
