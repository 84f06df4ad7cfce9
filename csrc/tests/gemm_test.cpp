// Standalone (torch-free) test of the GEMM kernels (csrc/gemm): every ISA variant runnable here against a float64
// reference and against the scalar variant, at LeViT shapes and odd shapes (widths off the vector width and tile,
// K over two K blocks, K = 0, no rows), every epilogue, outputs poisoned with NaN, the output computed in row
// tiles and column blocks as the threads split it, and the MLP in token tiles through its scratch buffer.
// Usage: gemm_test [seed]   (built and run by scripts/neon_test.sh)
#include "gemm/gemm.h"
#include "tests/harness.h"

using namespace levit;
using namespace levit::test;
using namespace levit::gemm;

namespace {

// residual + act(x·Wᵀ + bias) in float64; x (m, k), W (n, k).
std::vector<double> linear_ref(const std::vector<float>& x, const std::vector<float>& w, const float* bias,
                               const float* residual, int64_t m, int64_t k, int64_t n, Activation act) {
  std::vector<double> out(m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = bias ? bias[j] : 0.0;
      for (int64_t p = 0; p < k; ++p) s += double(x[i * k + p]) * w[j * k + p];
      s = activation_ref(act, s);
      out[i * n + j] = s + (residual ? residual[i * n + j] : 0.0);
    }
  return out;
}

std::vector<float> packed(const Kernels& kern, const std::vector<float>& w, int64_t n, int64_t k) {
  std::vector<float> p(packed_floats(n, k, kern.geometry.nr), kNaN);
  pack_weight(w.data(), k, 1, n, k, kern.geometry.nr, p.data());
  return p;
}

struct LinearCase {
  int64_t m, k, n;
  int flags;  // 1 bias, 4 residual
  Activation act = Activation::kNone;
};

// Output of `isa` for the case; rows in tiles of 5 and columns split after the first panel, so block boundaries
// inside the matrix are exercised.
std::vector<float> run_linear(Isa isa, const LinearCase& c, const std::vector<float>& x, const std::vector<float>& w,
                              const std::vector<float>& bias, const std::vector<float>& res) {
  const Kernels& kern = kernels_for(isa);
  const auto wp = packed(kern, w, c.n, c.k);
  std::vector<float> out(c.m * c.n, kNaN);
  const LinearArgs args{x.data(), c.k, wp.data(), c.flags & 1 ? bias.data() : nullptr,
                        c.flags & 4 ? res.data() : nullptr, c.n, out.data(), c.n, c.k, c.n, c.act};
  const int64_t split = std::min<int64_t>(c.n, kern.geometry.nr);
  for (int64_t m0 = 0; m0 < c.m; m0 += 5) {
    kern.linear_block(args, m0, std::min<int64_t>(c.m, m0 + 5), 0, split);
    kern.linear_block(args, m0, std::min<int64_t>(c.m, m0 + 5), split, c.n);
  }
  return out;
}

void check_linear(Results& results, Rng& rng, const std::vector<Isa>& isas, const LinearCase& c) {
  const auto x = rng.normal(c.m * c.k), w = rng.normal(c.n * c.k, 1.0f / std::sqrt(c.k + 1.0f));
  const auto bias = rng.normal(c.n), res = rng.normal(c.m * c.n);
  const auto ref = linear_ref(x, w, c.flags & 1 ? bias.data() : nullptr, c.flags & 4 ? res.data() : nullptr, c.m,
                              c.k, c.n, c.act);
  const auto scalar = run_linear(Isa::kScalar, c, x, w, bias, res);
  for (Isa isa : isas) {
    const auto out = isa == Isa::kScalar ? scalar : run_linear(isa, c, x, w, bias, res);
    const double err = max_rel_error(out.data(), ref.data(), out.size());
    results.check(err <= kFp32Rtol, "%s linear m=%lld k=%lld n=%lld flags=%d act=%s: max rel error vs float64 %.3e",
                  isa_name(isa), (long long)c.m, (long long)c.k, (long long)c.n, c.flags, activation_name(c.act),
                  err);
    const double diff = max_rel_error(out.data(), scalar.data(), out.size());
    results.check(diff <= kFp32Rtol,
                  "%s linear m=%lld k=%lld n=%lld flags=%d act=%s: max rel difference vs scalar %.3e",
                  isa_name(isa), (long long)c.m, (long long)c.k, (long long)c.n, c.flags, activation_name(c.act),
                  diff);
  }
}

void check_mlp(Results& results, Rng& rng, const std::vector<Isa>& isas, int64_t m, int64_t c, int64_t hidden,
               int64_t c_out, bool residual, Activation act = Activation::kHardswish) {
  const auto x = rng.normal(m * c), w1 = rng.normal(hidden * c, 1.0f / std::sqrt(c + 1.0f)), b1 = rng.normal(hidden);
  const auto w2 = rng.normal(c_out * hidden, 1.0f / std::sqrt(hidden + 1.0f)), b2 = rng.normal(c_out);
  std::vector<float> hidden_ref;  // float64 hidden rounded to float32, as the kernel stores it between the GEMMs
  for (double h : linear_ref(x, w1, b1.data(), nullptr, m, c, hidden, act))
    hidden_ref.push_back(static_cast<float>(h));
  const auto ref = linear_ref(hidden_ref, w2, b2.data(), residual ? x.data() : nullptr, m, hidden, c_out,
                              Activation::kNone);
  for (Isa isa : isas) {
    const Kernels& kern = kernels_for(isa);
    const auto p1 = packed(kern, w1, hidden, c), p2 = packed(kern, w2, c_out, hidden);
    std::vector<float> out(m * c_out, kNaN);
    const MlpArgs args{x.data(), c, p1.data(), b1.data(), p2.data(), b2.data(), out.data(), c_out, c, hidden, c_out,
                       act, residual};
    const int64_t rows = mlp_tile_rows(kern.geometry, hidden);
    AlignedBuffer scratch(rows * hidden);
    for (int64_t m0 = 0; m0 < m; m0 += rows) mlp_block(kern, args, m0, std::min(m, m0 + rows), scratch.data());
    const double err = max_rel_error(out.data(), ref.data(), out.size());
    results.check(err <= kFp32Rtol,
                  "%s mlp m=%lld %lld->%lld->%lld residual=%d act=%s: max rel error vs float64 %.3e", isa_name(isa),
                  (long long)m, (long long)c, (long long)hidden, (long long)c_out, residual, activation_name(act), err);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Rng rng(seed_from_args(argc, argv, "gemm_test"));
  const std::vector<Isa> isas = runnable_isas();
  Results results;
  for (int64_t m : {1, 7, 13})
    for (int64_t k : {1, 3, 17, 100, 300})
      for (int64_t n : {1, 3, 17, 100})
        for (int flags : {0, 1, 4, 5})
          for (Activation act : kActivations) check_linear(results, rng, isas, {m, k, n, flags, act});
  for (Activation act : kActivations)
    for (LinearCase c : std::vector<LinearCase>{
             {197, 2100, 37, 5}, {0, 5, 7, 5}, {3, 0, 7, 5},  // several K blocks; no rows; K = 0 (bias + residual)
             {196, 256, 1024, 1}, {196, 512, 256, 5}, {16, 1536, 512, 5},  // LeViT qkv / proj / stage-3 proj
             {196, 448, 1792, 1}, {49, 1792, 448, 5}}) {  // EfficientFormer-L1 stage-4 MLP fc1 / fc2 (7² tokens)
      c.act = act;
      check_linear(results, rng, isas, c);
    }
  check_mlp(results, rng, isas, 196, 256, 512, 256, true);  // LeViT-256 stage 1 at one image
  check_mlp(results, rng, isas, 49, 384, 768, 384, true);
  check_mlp(results, rng, isas, 16, 768, 1536, 768, true);
  check_mlp(results, rng, isas, 7, 17, 34, 3, false);
  check_mlp(results, rng, isas, 13, 17, 2100, 17, true);  // the second GEMM in two K blocks
  check_mlp(results, rng, isas, 200, 100, 1000, 100, true);
  // EfficientFormer-L1's MLPs (hidden 4C, GELU) at 28², 14², 7² tokens, and every activation at an odd shape.
  check_mlp(results, rng, isas, 784, 96, 384, 96, true, Activation::kGelu);
  check_mlp(results, rng, isas, 196, 224, 896, 224, true, Activation::kGelu);
  check_mlp(results, rng, isas, 49, 448, 1792, 448, true, Activation::kGelu);
  for (Activation act : kActivations) check_mlp(results, rng, isas, 13, 17, 70, 17, true, act);
  return results.finish();
}
