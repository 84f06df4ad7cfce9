// ISA-independent parts of the GEMM: weight packing, kernel-table lookup, the MLP's two-GEMM token tile and the
// FMA peak measurement.
// Compiled for the baseline instruction set; the SIMD work happens in the per-ISA kernel tables.
#include "gemm/gemm.h"

#include <algorithm>
#include <ctime>
#include <thread>
#include <vector>

#include "common/isa_select.h"

namespace levit::gemm {

int64_t packed_floats(int64_t n, int64_t k, int nr) { return (n + nr - 1) / nr * nr * k; }

void pack_weight(const float* w, int64_t stride_n, int64_t stride_k, int64_t n, int64_t k, int nr, float* packed) {
  for (int64_t p0 = 0; p0 < n; p0 += nr) {
    const int64_t cols = std::min<int64_t>(nr, n - p0);
    for (int64_t kk = 0; kk < k; ++kk, packed += nr) {
      const float* src = w + p0 * stride_n + kk * stride_k;
      for (int64_t j = 0; j < cols; ++j) packed[j] = src[j * stride_n];
      std::fill(packed + cols, packed + nr, 0.0f);
    }
  }
}

const Kernels& kernels_for(Isa isa) {
  return *select_variant<const Kernels*>(isa, "GEMM", &kScalarKernels, LEVIT_IF_X86(&kAvx2Kernels),
                                         LEVIT_IF_X86(&kAvx512Kernels), LEVIT_IF_AARCH64(&kNeonKernels));
}

int64_t mlp_tile_rows(const Geometry& g, int64_t hidden) {
  constexpr int64_t kHiddenTileFloats = 48 * 1024;  // 192 KiB: L2-resident next to the x rows and weight panels
  const int64_t rows = kHiddenTileFloats / std::max<int64_t>(hidden, 1) / g.mr * g.mr;
  return std::clamp<int64_t>(rows, g.mr, 16 * g.mr);
}

void mlp_block(const Kernels& kernels, const MlpArgs& a, int64_t m0, int64_t m1, float* scratch) {
  const int64_t rows = m1 - m0;
  const float* x = a.x + m0 * a.ldx;
  const LinearArgs up{x, a.ldx, a.packed1, a.b1, nullptr, 0, scratch, a.hidden, a.c, a.hidden, a.act};
  kernels.linear_block(up, 0, rows, 0, a.hidden);
  const LinearArgs down{scratch, a.hidden, a.packed2, a.b2, a.residual ? x : nullptr, a.ldx,
                        a.out + m0 * a.ldo, a.ldo, a.hidden, a.c_out, Activation::kNone};
  kernels.linear_block(down, 0, rows, 0, a.c_out);
}

namespace {

double thread_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double one_thread_peak_gflops(const Kernels& kernels) {
  volatile float sink = 0.0f;  // keeps every loop's result alive
  int64_t iterations = 1 << 14;
  double seconds = 0.0;
  while (true) {  // calibrate: a sample of >= 5 ms
    const double start = thread_cpu_seconds();
    sink = sink + kernels.fma_chains(iterations);
    seconds = thread_cpu_seconds() - start;
    if (seconds >= 5e-3) break;
    iterations *= 4;
  }
  iterations = std::max<int64_t>(1, static_cast<int64_t>(iterations * (0.02 / seconds)));  // ~20 ms samples
  double best = 0.0;
  for (int sample = 0; sample < 7; ++sample) {
    const double start = thread_cpu_seconds();
    sink = sink + kernels.fma_chains(iterations);
    const double elapsed = std::max(thread_cpu_seconds() - start, 1e-9);
    best = std::max(best, static_cast<double>(iterations) * kernels.fma_chain_flops / elapsed / 1e9);
  }
  return best;
}

}  // namespace

double fma_peak_gflops(const Kernels& kernels, int threads) {
  if (threads <= 1) return one_thread_peak_gflops(kernels);
  std::vector<double> peaks(threads, 0.0);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) workers.emplace_back([&, t] { peaks[t] = one_thread_peak_gflops(kernels); });
  for (auto& w : workers) w.join();
  double total = 0.0;
  for (double p : peaks) total += p;
  return total;
}

}  // namespace levit::gemm
