// Accuracy of the epilogue activations (csrc/simd/activations.h) for every ISA variant runnable here, against
// float64: error in ulps of the exact result wherever it is a normal float, and an absolute error ≤ 2^-126 where it
// is not (results below the normal range may flush towards 0, as simd::exp's do), over all floats of magnitude ≤ 64
// (every 4099th bit pattern; every N-th with --step N; every one with --exhaustive: 2.2e9 points per function and
// ISA, minutes on an idle core); plus special values, which must give what torch's fp32 functions give, and the
// scalar variant's bits on every ISA.
// Usage: activations_test [seed] [--exhaustive | --step N]
#include "tests/harness.h"
#include "tests/simd_math.h"

using namespace levit;
using namespace levit::test;

namespace {

// Bounds the tests hold the kernels to (measured: see csrc/simd/README.md). GELU's is over the whole range, both
// signs (the tail formula keeps x < 0 relative too): worst 5.51 ulp at x = -1.8257 in a 36.6M-point sweep
// (--step 61), 4.94 ulp in the default sample. Hardswish rounds x + 3, the product and 1/6 (worst 2.22 ulp in
// the --step 61 sweep); ReLU is exact.
constexpr double kMaxUlp[] = {0.0, 2.5, 6.5, 0.0};  // by MathFn: exp (unused here), hardswish, gelu, relu
constexpr MathFn kFns[] = {MathFn::kHardswish, MathFn::kGelu, MathFn::kRelu};
const char* fn_name(MathFn fn) {
  return fn == MathFn::kHardswish ? "hardswish" : fn == MathFn::kGelu ? "gelu" : "relu";
}
Activation activation_of(MathFn fn) {
  if (fn == MathFn::kHardswish) return Activation::kHardswish;
  return fn == MathFn::kGelu ? Activation::kGelu : Activation::kRelu;
}

struct Sweep {
  double max_ulp[2] = {0.0, 0.0};  // x >= 0, x < 0
  double worst_x[2] = {0.0, 0.0};
  size_t points = 0;
};

// All floats of one sign with magnitude ≤ limit, every `step`-th bit pattern (plus the last one).
void sweep(Isa isa, MathFn fn, bool negative, float limit, uint32_t step, Sweep& s) {
  const Activation act = activation_of(fn);
  auto apply = [&](const float* x, float* y, size_t n) { math_array(isa, fn, x, y, n); };
  sweep_floats(negative, limit, step, apply, [&](const std::vector<float>& x, const std::vector<float>& y) {
    for (size_t i = 0; i < x.size(); ++i) {
      const double err = ulp_error(y[i], activation_ref(act, x[i]));
      if (err > s.max_ulp[negative]) s.max_ulp[negative] = err, s.worst_x[negative] = x[i];
    }
    s.points += x.size();
  });
}

// torch's float32 result for the special inputs (ReLU and Hardswish keep NaN; x·0 of ±inf is NaN).
bool torch_like(MathFn fn, float x, float y) {
  const float inf = std::numeric_limits<float>::infinity();
  if (std::isnan(x)) return std::isnan(y);
  if (x == inf) return y == inf;
  if (x == -inf) return fn == MathFn::kRelu ? y == 0.0f : std::isnan(y);
  if (fn == MathFn::kHardswish && std::abs(x) > 1e38f) return x > 0 ? y == inf : y == 0.0f;  // x·6 overflows
  return ulp_error(y, activation_ref(activation_of(fn), x)) <= kMaxUlp[static_cast<int>(fn)];
}

}  // namespace

int main(int argc, char** argv) {
  uint32_t step = 4099;
  if (argc > 2 && std::strcmp(argv[2], "--exhaustive") == 0) step = 1;
  if (argc > 3 && std::strcmp(argv[2], "--step") == 0)
    step = std::max<uint32_t>(1, static_cast<uint32_t>(std::strtoul(argv[3], nullptr, 10)));
  seed_from_args(argc, argv, "activations_test");  // deterministic sweep; the seed is accepted for a uniform interface
  Results results;
  const float inf = std::numeric_limits<float>::infinity(), big = std::numeric_limits<float>::max();
  const std::vector<float> special = {-inf, inf, kNaN, -kNaN, 0.0f, -0.0f, 1e-45f, -1e-45f, 1e-40f, -1e-40f,
                                      -13.0f, -13.2f, -13.3f, -14.0f, 14.0f, -3.0f, 3.0f, -100.0f, 100.0f, 1e30f,
                                      -1e30f, big, -big};
  for (MathFn fn : kFns) {
    std::vector<float> scalar_special(special.size());
    math_array(Isa::kScalar, fn, special.data(), scalar_special.data(), special.size());
    for (Isa isa : runnable_isas()) {
      Sweep s;
      sweep(isa, fn, false, 64.0f, step, s);
      sweep(isa, fn, true, 64.0f, step, s);
      std::printf("%s %s: max error %.3f ulp for x >= 0 (at %.9g), %.3f ulp for x < 0 (at %.9g), %zu points\n",
                  isa_name(isa), fn_name(fn), s.max_ulp[0], s.worst_x[0], s.max_ulp[1], s.worst_x[1], s.points);
      for (int neg = 0; neg < 2; ++neg)
        results.check(s.max_ulp[neg] <= kMaxUlp[static_cast<int>(fn)], "%s %s: %.3f ulp > %.1f at x = %.9g",
                      isa_name(isa), fn_name(fn), s.max_ulp[neg], kMaxUlp[static_cast<int>(fn)], s.worst_x[neg]);

      std::vector<float> y(special.size());
      math_array(isa, fn, special.data(), y.data(), special.size());
      for (size_t i = 0; i < special.size(); ++i) {
        results.check(torch_like(fn, special[i], y[i]), "%s %s(%g) = %g, expected torch's %g", isa_name(isa),
                      fn_name(fn), special[i], y[i], activation_ref(activation_of(fn), special[i]));
        results.check(same_float(y[i], scalar_special[i]), "%s %s(%g) = %g differs from scalar %g", isa_name(isa),
                      fn_name(fn), special[i], y[i], scalar_special[i]);
      }
    }
  }
  return results.finish();
}
