// Tiny shared harness of the standalone (torch-free) kernel test programs in csrc/tests: each <family>_test.cpp is
// its own program (built and run by scripts/neon_test.sh) that checks every ISA variant this build and CPU can run
// (the SIMD ones against the scalar one and against a float64 reference) and ends with "N passed, M failed".
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "common/activation.h"
#include "common/isa.h"

namespace levit::test {

constexpr double kFp32Rtol = 1e-5;  // levit_kernels.tolerances.KERNEL_RTOL[torch.float32]
const float kNaN = std::numeric_limits<float>::quiet_NaN();

struct Rng {
  std::mt19937_64 gen;
  explicit Rng(uint64_t seed) : gen(seed) {}
  std::vector<float> normal(size_t n, float scale = 1.0f) {
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> v(n);
    for (float& x : v) x = dist(gen);
    return v;
  }
};

// The project's error measure (levit_kernels.tolerances.max_rel_error): max|out − ref| / max(max|ref|, 1); a NaN or
// inf anywhere gives infinity.
template <class Ref>
double max_rel_error(const float* out, const Ref* ref, size_t n) {
  double err = 0.0, scale = 1.0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(out[i]) || !std::isfinite(static_cast<double>(ref[i])))
      return std::numeric_limits<double>::infinity();
    err = std::max(err, std::abs(static_cast<double>(out[i]) - static_cast<double>(ref[i])));
    scale = std::max(scale, std::abs(static_cast<double>(ref[i])));
  }
  return err / scale;
}

constexpr Activation kActivations[] = {Activation::kNone, Activation::kHardswish, Activation::kGelu,
                                       Activation::kRelu};

// act(x) in float64, as torch defines them (GELU in its exact erf form, through erfc so the tail stays exact).
inline double activation_ref(Activation act, double x) {
  switch (act) {
    case Activation::kHardswish: return x * std::min(std::max(x + 3.0, 0.0), 6.0) / 6.0;
    case Activation::kGelu: return 0.5 * x * std::erfc(-x * 0.70710678118654752440);
    case Activation::kRelu: return std::max(x, 0.0);
    default: return x;
  }
}

inline float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
// Equal bits, or both NaN.
inline bool same_float(float a, float b) { return (std::isnan(a) && std::isnan(b)) || bits_of(a) == bits_of(b); }

// Error of y in ulps of the exact result (of its float binade) for the math sweeps (exp_test, activations_test).
// Where |exact| < 2^-126 (results the kernels may flush towards 0): 0 when within 2^-126 of it, else infinite.
inline double ulp_error(float y, double exact) {
  const double diff = std::abs(static_cast<double>(y) - exact);
  if (std::abs(exact) < 0x1p-126) return diff <= 0x1p-126 ? 0.0 : std::numeric_limits<double>::infinity();
  if (std::isnan(y) || std::isinf(y)) return std::numeric_limits<double>::infinity();
  return diff / std::ldexp(1.0, std::ilogb(exact) - 23);
}

// Calls visit(x, y) on batches of the floats of one sign with magnitude ≤ limit, every `step`-th bit pattern
// (plus the last one), y = fn(x) computed by the variant `isa` through apply(isa, x, y, n).
template <class Apply, class Visit>
void sweep_floats(bool negative, float limit, uint32_t step, Apply&& apply, Visit&& visit) {
  const uint32_t sign = negative ? 0x80000000u : 0u, last = bits_of(limit);
  std::vector<float> x, y;
  x.reserve(1 << 16);
  auto flush = [&] {
    y.resize(x.size());
    apply(x.data(), y.data(), x.size());
    visit(x, y);
    x.clear();
  };
  for (uint64_t u = 0; u <= last; u += step) {
    x.push_back(from_bits(sign | static_cast<uint32_t>(u)));
    if (x.size() == (1 << 16)) flush();
  }
  x.push_back(from_bits(sign | last));
  flush();
}

// Variants compiled into this program and runnable on this CPU.
inline std::vector<Isa> runnable_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kNeon}) {
    if (isa_supported(isa))
      out.push_back(isa);
    else
      std::printf("skip %s: not supported by this CPU or build\n", isa_name(isa));
  }
  return out;
}

// First argument: the seed (default: random, printed so a failure can be replayed).
inline uint64_t seed_from_args(int argc, char** argv, const char* program) {
  const uint64_t seed = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : std::random_device{}();
  std::printf("%s seed %llu (rerun: %s %llu)\n", program, static_cast<unsigned long long>(seed), program,
              static_cast<unsigned long long>(seed));
  return seed;
}

class Results {
 public:
  // Records one check; prints the printf-style description when it fails.
  bool check(bool ok, const char* fmt, ...) {
    ok ? ++passed_ : ++failed_;
    if (!ok) {
      std::va_list args;
      va_start(args, fmt);
      std::printf("FAIL ");
      std::vprintf(fmt, args);
      std::printf("\n");
      va_end(args);
    }
    return ok;
  }
  int finish() const {
    std::printf("%d passed, %d failed\n", passed_, failed_);
    return failed_ == 0 && passed_ > 0 ? 0 : 1;
  }

 private:
  int passed_ = 0, failed_ = 0;
};

// NaN/inf inputs: run(isa) (a std::vector<float> output) of every SIMD variant must give the scalar variant's
// pattern — NaN where NaN, the same ±inf where ±inf — and agree with it on the elements finite in both.
template <class Run>
void check_special_values_match_scalar(Results& results, const std::vector<Isa>& isas, const char* what, Run run) {
  const std::vector<float> scalar = run(Isa::kScalar);
  for (Isa isa : isas) {
    if (isa == Isa::kScalar) continue;
    const std::vector<float> out = run(isa);
    size_t mismatched = 0;
    double diff = 0.0;
    for (size_t i = 0; i < out.size(); ++i) {
      if (std::isfinite(out[i]) && std::isfinite(scalar[i]))
        diff = std::max(diff, std::abs(static_cast<double>(out[i]) - scalar[i]));
      else
        mismatched += !(std::isnan(out[i]) == std::isnan(scalar[i]) && (std::isnan(out[i]) || out[i] == scalar[i]));
    }
    results.check(mismatched == 0 && diff <= kFp32Rtol * 10, "%s %s special values: %zu NaN/inf mismatches, max diff "
                  "%.3e", isa_name(isa), what, mismatched, diff);
  }
}

// 64-byte aligned float buffer (the kernels' workspace contract), filled with NaN so unwritten reads show.
class AlignedBuffer {
 public:
  explicit AlignedBuffer(size_t floats)
      : data_(static_cast<float*>(std::aligned_alloc(64, (std::max<size_t>(floats, 1) * 4 + 63) / 64 * 64))) {
    std::fill(data_, data_ + floats, kNaN);
  }
  ~AlignedBuffer() { std::free(data_); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  float* data() { return data_; }

 private:
  float* data_;
};

}  // namespace levit::test
