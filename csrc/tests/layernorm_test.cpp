// Standalone (torch-free) test of the LayerNorm kernel (csrc/layernorm): every ISA variant runnable here against a
// float64 reference and against the scalar variant, at the EfficientFormer / T2T-ViT widths and odd widths, rows
// strided (a column slice of a wider buffer), with and without the affine, outputs poisoned with NaN (padding
// between output rows must stay untouched), rows split over several "threads". Also NaN/inf inputs: every variant
// gives the scalar variant's pattern.
// Usage: layernorm_test [seed]
#include "layernorm/layernorm_kernel.h"
#include "tests/harness.h"

#include <utility>

using namespace levit;
using namespace levit::test;
using layernorm::Problem;

namespace {

struct Case {
  int64_t rows, channels, ldx, ldo;
  bool weight, bias;
  std::vector<float> x, w, b;
  float eps = 1e-5f;

  Case(int64_t rows, int64_t channels, int64_t pad, bool weight, bool bias, Rng& rng, float offset = 0.0f)
      : rows(rows), channels(channels), ldx(channels + pad), ldo(channels + pad), weight(weight), bias(bias) {
    x = rng.normal(rows * ldx, 2.0f);
    for (float& v : x) v += offset;
    w = rng.normal(channels), b = rng.normal(channels);
  }
  Problem problem(float* out) const {
    Problem p;
    p.x = x.data(), p.ldx = ldx, p.out = out, p.ldo = ldo, p.channels = channels, p.eps = eps;
    p.weight = weight ? w.data() : nullptr, p.bias = bias ? b.data() : nullptr;
    return p;
  }
  // Row r's mean and 1/sqrt(var + eps) in float64, two passes.
  std::pair<double, double> row_stats(int64_t r) const {
    const float* xr = x.data() + r * ldx;
    double mean = 0.0, var = 0.0;
    for (int64_t c = 0; c < channels; ++c) mean += xr[c];
    mean /= channels;
    for (int64_t c = 0; c < channels; ++c) var += (xr[c] - mean) * (xr[c] - mean);
    return {mean, 1.0 / std::sqrt(var / channels + eps)};
  }
  // float64 LayerNorm of the valid columns; the padding columns of the output stay NaN.
  std::vector<double> reference() const {
    std::vector<double> out(rows * ldo, std::numeric_limits<double>::quiet_NaN());
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x.data() + r * ldx;
      const auto [mean, rstd] = row_stats(r);
      for (int64_t c = 0; c < channels; ++c)
        out[r * ldo + c] = (xr[c] - mean) * rstd * (weight ? w[c] : 1.0) + (bias ? b[c] : 0.0);
    }
    return out;
  }
  // How far one rounding of x (relative 2^-24) moves row r's output, relative to the error bound's unit: rstd·max|x|
  // (·|w|). At C = 2 with two near-equal inputs, rstd ~ 1/sqrt(eps) = 316, so float32 x - mean alone puts ~4e-5 on
  // outputs of magnitude 1 (seen: 1.07e-5 > 1e-5 on a random seed) - the problem's conditioning, not the kernel's
  // error. At the offset case (x ~ 1000 ± 2) the bound widens to ~5e-3, still far below the percent-level error a
  // one-pass variance (E[x²] - mean², cancelling ~1e6 against ~1e6) would make there.
  double conditioning(int64_t r) const {
    const float* xr = x.data() + r * ldx;
    double amp = 0.0;
    for (int64_t c = 0; c < channels; ++c) amp = std::max(amp, std::abs(xr[c]) * (weight ? std::abs(w[c]) : 1.0));
    return amp * row_stats(r).second;
  }
  std::string describe() const {
    char buf[160];
    std::snprintf(buf, sizeof buf, "layer_norm rows=%lld C=%lld ldx=%lld weight=%d bias=%d", (long long)rows,
                  (long long)channels, (long long)ldx, weight, bias);
    return buf;
  }
};

// Runs `isa` over all rows as `threads` consecutive row ranges into a NaN-filled output.
std::vector<float> run(const Case& c, Isa isa, int threads) {
  std::vector<float> out(c.rows * c.ldo, kNaN);
  const Problem p = c.problem(out.data());
  for (int t = 0; t < threads; ++t) layernorm::kernel_for(isa)(p, c.rows * t / threads, c.rows * (t + 1) / threads);
  return out;
}

// Compares the valid columns; checks the padding columns were not written.
void check_case(Results& results, const Case& c, const std::vector<Isa>& isas) {
  const auto ref = c.reference();
  const auto scalar = run(c, Isa::kScalar, 3);
  double bound_unit = 1.0;  // errors are relative to the larger of |out| and each row's conditioning
  for (int64_t r = 0; r < c.rows; ++r) bound_unit = std::max(bound_unit, c.conditioning(r));
  for (Isa isa : isas) {
    const auto out = isa == Isa::kScalar ? scalar : run(c, isa, 3);
    double err = 0.0, diff = 0.0, scale = bound_unit;
    bool padding_intact = true, finite = true;
    for (int64_t r = 0; r < c.rows; ++r) {
      for (int64_t col = 0; col < c.ldo; ++col) {
        const size_t i = r * c.ldo + col;
        if (col >= c.channels) {
          padding_intact &= std::isnan(out[i]);
          continue;
        }
        finite &= std::isfinite(out[i]);
        err = std::max(err, std::abs(out[i] - ref[i]));
        diff = std::max(diff, std::abs(static_cast<double>(out[i]) - scalar[i]));
        scale = std::max(scale, std::abs(ref[i]));
      }
    }
    results.check(finite && err / scale <= kFp32Rtol, "%s %s: max rel error vs float64 %.3e > %.1e (finite %d)",
                  isa_name(isa), c.describe().c_str(), err / scale, kFp32Rtol, finite);
    results.check(padding_intact, "%s %s: wrote outside the rows' C columns", isa_name(isa), c.describe().c_str());
    if (isa != Isa::kScalar)
      results.check(diff / scale <= kFp32Rtol, "%s %s: max rel difference vs scalar %.3e", isa_name(isa),
                    c.describe().c_str(), diff / scale);
  }
}

// Row 0: one NaN (the row turns NaN), row 1: one +inf, row 2: -inf and +inf, row 3 finite; every variant must
// match the scalar variant's NaN/inf pattern and agree elsewhere.
void check_special_values(Results& results, Rng& rng, const std::vector<Isa>& isas) {
  const float inf = std::numeric_limits<float>::infinity();
  Case c(4, 37, 0, true, true, rng);
  c.x[5] = kNaN, c.x[37 + 20] = inf, c.x[74 + 3] = -inf, c.x[74 + 36] = inf;
  check_special_values_match_scalar(results, isas, "layer_norm", [&](Isa isa) { return run(c, isa, 2); });
}

}  // namespace

int main(int argc, char** argv) {
  Rng rng(seed_from_args(argc, argv, "layernorm_test"));
  const auto isas = runnable_isas();
  Results results;
  // EfficientFormer's Meta3D widths (448 L1, 512 L3, 768 L7) at 49 tokens; T2T-ViT's 64 / 147 / 384 / 576.
  for (int64_t c : {448, 512, 768, 64, 147, 384, 576})
    for (bool affine : {false, true}) check_case(results, Case(49, c, 0, affine, affine, rng), isas);
  // Odd widths (below, around and off the vector widths), strided rows, weight or bias alone, one row.
  for (int64_t c : {1, 2, 3, 7, 8, 15, 16, 17, 31, 33, 65, 100})
    for (int64_t pad : {0, 5}) {
      check_case(results, Case(7, c, pad, false, false, rng), isas);
      check_case(results, Case(3, c, pad, true, false, rng), isas);
      check_case(results, Case(1, c, pad, false, true, rng), isas);
    }
  // A mean far from zero against the spread (1000 ± 2): the two-pass variance stays exact.
  check_case(results, Case(9, 384, 3, false, false, rng, 1000.0f), isas);
  check_special_values(results, rng, isas);
  return results.finish();
}
