// Standalone (torch-free) test of the GEMM kernels of every ISA this build and CPU run (on AArch64 under qemu:
// NEON), against a float64 reference, at LeViT shapes and odd shapes, outputs poisoned with NaN.
// Build (x86-64, from the repository root):
//   g++ -O2 -std=c++17 -march=x86-64 -Icsrc csrc/tests/gemm_test.cpp csrc/gemm/*.cpp csrc/common/isa.cpp -o gemm_test
// Usage: gemm_test [seed]. Exit status 0 when every case is within tolerance.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <vector>

#include "common/isa.h"
#include "gemm/gemm.h"

using namespace levit;
using namespace levit::gemm;

namespace {

constexpr double kRtol = 1e-5;  // levit_kernels.tolerances.KERNEL_RTOL[float32]
const float kNaN = std::numeric_limits<float>::quiet_NaN();

struct Rng {
  std::mt19937 gen;
  std::vector<float> normal(size_t n) {
    std::normal_distribution<float> d;
    std::vector<float> v(n);
    for (auto& x : v) x = d(gen);
    return v;
  }
};

double hardswish(double x) { return x * std::min(std::max(x + 3.0, 0.0), 6.0) / 6.0; }

// residual + act(x·Wᵀ + bias) in float64.
std::vector<double> linear_ref(const std::vector<float>& x, const std::vector<float>& w, const float* bias,
                               const float* residual, int64_t m, int64_t k, int64_t n, Activation act) {
  std::vector<double> out(m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = bias ? bias[j] : 0.0;
      for (int64_t p = 0; p < k; ++p) s += double(x[i * k + p]) * w[j * k + p];
      if (act == Activation::kHardswish) s = hardswish(s);
      out[i * n + j] = s + (residual ? residual[i * n + j] : 0.0);
    }
  return out;
}

// max|out - ref| / max(max|ref|, 1); NaN anywhere gives infinity.
double rel_error(const std::vector<float>& out, const std::vector<double>& ref) {
  double err = 0.0, scale = 1.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(out[i])) return std::numeric_limits<double>::infinity();
    err = std::max(err, std::abs(out[i] - ref[i]));
    scale = std::max(scale, std::abs(ref[i]));
  }
  return err / scale;
}

std::vector<float> packed(const Kernels& kern, const std::vector<float>& w, int64_t n, int64_t k) {
  std::vector<float> p(packed_floats(n, k, kern.geometry.nr), kNaN);
  pack_weight(w.data(), k, 1, n, k, kern.geometry.nr, p.data());
  return p;
}

int failures = 0, cases = 0;

void report(const char* isa, const char* what, int64_t m, int64_t k, int64_t n, int flags, double err) {
  ++cases;
  if (err <= kRtol) return;
  ++failures;
  std::printf("FAIL %s %s m=%lld k=%lld n=%lld flags=%d: max rel error %.3e > %.1e\n", isa, what, (long long)m,
              (long long)k, (long long)n, flags, err, kRtol);
}

// flags: 1 bias, 2 hardswish, 4 residual. The output is computed in row tiles of 5 and column blocks of one
// panel (then the rest), so block boundaries inside the matrix are exercised too.
void check_linear(Rng& rng, Isa isa, int64_t m, int64_t k, int64_t n, int flags) {
  const Kernels& kern = kernels_for(isa);
  const auto x = rng.normal(m * k), w = rng.normal(n * k), bias = rng.normal(n), res = rng.normal(m * n);
  const auto wp = packed(kern, w, n, k);
  std::vector<float> out(m * n, kNaN);
  const Activation act = flags & 2 ? Activation::kHardswish : Activation::kNone;
  const LinearArgs args{x.data(), k, wp.data(), flags & 1 ? bias.data() : nullptr, flags & 4 ? res.data() : nullptr,
                        n, out.data(), n, k, n, act};
  const int64_t split = std::min<int64_t>(n, kern.geometry.nr);
  for (int64_t m0 = 0; m0 < m; m0 += 5) {
    kern.linear_block(args, m0, std::min<int64_t>(m, m0 + 5), 0, split);
    kern.linear_block(args, m0, std::min<int64_t>(m, m0 + 5), split, n);
  }
  const auto ref = linear_ref(x, w, args.bias, args.residual, m, k, n, act);
  report(isa_name(isa), "linear", m, k, n, flags, rel_error(out, ref));
}

void check_mlp(Rng& rng, Isa isa, int64_t m, int64_t c, int64_t hidden, int64_t c_out, bool residual) {
  const Kernels& kern = kernels_for(isa);
  const auto x = rng.normal(m * c), w1 = rng.normal(hidden * c), b1 = rng.normal(hidden);
  const auto w2 = rng.normal(c_out * hidden), b2 = rng.normal(c_out);
  const auto p1 = packed(kern, w1, hidden, c), p2 = packed(kern, w2, c_out, hidden);
  std::vector<float> out(m * c_out, kNaN);
  const MlpArgs args{x.data(), c, p1.data(), b1.data(), p2.data(), b2.data(), out.data(), c_out, c, hidden, c_out,
                     Activation::kHardswish, residual};
  const int64_t rows = mlp_tile_rows(kern.geometry, hidden);
  std::vector<float> scratch(rows * hidden, kNaN);
  for (int64_t m0 = 0; m0 < m; m0 += rows) mlp_block(kern, args, m0, std::min(m, m0 + rows), scratch.data());
  std::vector<float> hidden_f;
  for (double h : linear_ref(x, w1, b1.data(), nullptr, m, c, hidden, Activation::kHardswish))
    hidden_f.push_back(static_cast<float>(h));
  const auto ref = linear_ref(hidden_f, w2, b2.data(), residual ? x.data() : nullptr, m, hidden, c_out,
                              Activation::kNone);
  report(isa_name(isa), "mlp", m, c, c_out, residual ? 4 : 0, rel_error(out, ref));
}

}  // namespace

int main(int argc, char** argv) {
  const unsigned seed = argc > 1 ? static_cast<unsigned>(std::strtoul(argv[1], nullptr, 10)) : std::random_device{}();
  std::printf("gemm_test seed %u\n", seed);
  Rng rng{std::mt19937(seed)};
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kNeon}) {
    if (!isa_supported(isa)) {
      std::printf("skip %s: not supported by this CPU/build\n", isa_name(isa));
      continue;
    }
    // Odd shapes: widths not multiples of any vector width or tile, K spanning several K blocks, every epilogue.
    for (int64_t m : {1, 7, 13})
      for (int64_t k : {1, 3, 17, 100, 300})
        for (int64_t n : {1, 3, 17, 100})
          for (int flags = 0; flags < 8; ++flags) check_linear(rng, isa, m, k, n, flags);
    check_linear(rng, isa, 197, 600, 37, 7);
    check_linear(rng, isa, 0, 5, 7, 7);
    check_linear(rng, isa, 3, 0, 7, 7);
    // LeViT-256 stage-1 shapes at one image (196 tokens): qkv, proj, MLP.
    check_linear(rng, isa, 196, 256, 1024, 1);
    check_linear(rng, isa, 196, 512, 256, 5);
    check_mlp(rng, isa, 196, 256, 512, 256, true);
    check_mlp(rng, isa, 49, 384, 768, 384, true);
    check_mlp(rng, isa, 7, 17, 34, 3, false);
    check_mlp(rng, isa, 200, 100, 1000, 100, true);
  }
  std::printf("%d/%d gemm cases passed\n", cases - failures, cases);
  return failures == 0 ? 0 : 1;
}
