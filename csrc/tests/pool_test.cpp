// Standalone (torch-free) test of the pooling-mixer kernel (csrc/pool): every ISA variant runnable here against a
// float64 reference (the P×P window summed directly, not separably) and against the scalar variant, at the
// EfficientFormer L1/L3/L7 stage shapes and odd maps and widths, pool sizes 1, 3, 5, channels-last maps read
// through strides (a padded W or C, a permuted batch), outputs poisoned with NaN, work items split over several
// "threads" with their own poisoned scratch. Also NaN/inf inputs: every variant gives the scalar variant's pattern.
// Usage: pool_test [seed]
#include "pool/pool_kernel.h"
#include "tests/harness.h"

using namespace levit;
using namespace levit::test;
using pool::Problem;

namespace {

struct Shape {
  int64_t batch, height, width, channels;
  int pool_size = 3;
  int64_t pad_c = 0, pad_w = 0;  // floats of padding after each pixel's C values and after each row's W pixels
};

struct Case {
  Shape s;
  std::vector<float> x, ls;
  Problem p;

  Case(const Shape& shape, Rng& rng) : s(shape) {
    const int64_t sw = s.channels + s.pad_c, sh = s.width * sw + s.pad_w, sb = s.height * sh;
    x = rng.normal(s.batch * sb);
    ls = rng.normal(s.channels);
    p.batch = s.batch, p.height = s.height, p.width = s.width, p.channels = s.channels;
    p.radius = s.pool_size / 2;
    p.x = x.data(), p.x_stride[0] = sb, p.x_stride[1] = sh, p.x_stride[2] = sw;
    p.layer_scale = ls.data();
  }
  float at(int64_t b, int64_t h, int64_t w, int64_t c) const {
    return x[b * p.x_stride[0] + h * p.x_stride[1] + w * p.x_stride[2] + c];
  }
  size_t outputs() const { return s.batch * s.height * s.width * s.channels; }
  std::vector<double> reference() const {
    std::vector<double> out(outputs());
    const int64_t r = p.radius;
    size_t i = 0;
    for (int64_t b = 0; b < s.batch; ++b)
      for (int64_t h = 0; h < s.height; ++h)
        for (int64_t w = 0; w < s.width; ++w)
          for (int64_t c = 0; c < s.channels; ++c, ++i) {
            double sum = 0.0;
            int count = 0;
            for (int64_t y = std::max<int64_t>(h - r, 0); y <= std::min(h + r, s.height - 1); ++y)
              for (int64_t v = std::max<int64_t>(w - r, 0); v <= std::min(w + r, s.width - 1); ++v, ++count)
                sum += at(b, y, v, c);
            const double xv = at(b, h, w, c);
            out[i] = xv + ls[c] * (sum / count - xv);
          }
    return out;
  }
  std::string describe() const {
    char buf[160];
    std::snprintf(buf, sizeof buf, "pool_mixer B=%lld H=%lld W=%lld C=%lld P=%d pad_c=%lld pad_w=%lld",
                  (long long)s.batch, (long long)s.height, (long long)s.width, (long long)s.channels, s.pool_size,
                  (long long)s.pad_c, (long long)s.pad_w);
    return buf;
  }
};

// Runs `isa` over all work items (planned for `min_items`) as `threads` consecutive ranges, each with its own
// poisoned scratch, into a poisoned output.
std::vector<float> run(const Case& c, Isa isa, int64_t min_items, int threads) {
  Problem p = c.p;
  std::vector<float> out(c.outputs(), kNaN);
  p.out = out.data();
  const pool::Plan plan = pool::make_plan(p, min_items);
  for (int t = 0; t < threads; ++t) {
    AlignedBuffer scratch(plan.scratch_floats);
    pool::kernel_for(isa)(p, plan, plan.items * t / threads, plan.items * (t + 1) / threads, scratch.data());
  }
  return out;
}

void check_case(Results& results, const Case& c, const std::vector<Isa>& isas) {
  const auto ref = c.reference();
  const auto scalar = run(c, Isa::kScalar, 1, 1);
  for (Isa isa : isas) {
    // One item per image, and bands of rows (down to one row per band) split over 3 "threads".
    for (int64_t min_items : {int64_t{1}, int64_t{3} * c.s.batch, c.s.batch * c.s.height}) {
      const auto out = run(c, isa, min_items, 3);
      const double err = max_rel_error(out.data(), ref.data(), ref.size());
      results.check(err <= kFp32Rtol, "%s %s items>=%lld: max rel error vs float64 %.3e > %.1e", isa_name(isa),
                    c.describe().c_str(), (long long)min_items, err, kFp32Rtol);
      const double diff = max_rel_error(out.data(), scalar.data(), scalar.size());
      results.check(diff <= kFp32Rtol, "%s %s items>=%lld: max rel difference vs scalar %.3e", isa_name(isa),
                    c.describe().c_str(), (long long)min_items, diff);
    }
  }
}

// A NaN, a +inf, and a −inf next to a +inf (their window sums NaN): every variant matches the scalar pattern.
void check_special_values(Results& results, Rng& rng, const std::vector<Isa>& isas) {
  const float inf = std::numeric_limits<float>::infinity();
  Case c({2, 6, 5, 19}, rng);
  const int64_t sb = c.p.x_stride[0], sh = c.p.x_stride[1], sw = c.p.x_stride[2];
  c.x[1 * sh + 2 * sw + 4] = kNaN;
  c.x[sb + 0 * sh + 4 * sw + 18] = inf;
  c.x[sb + 4 * sh + 1 * sw + 7] = -inf;
  c.x[sb + 5 * sh + 2 * sw + 7] = inf;
  check_special_values_match_scalar(results, isas, "pool_mixer", [&](Isa isa) { return run(c, isa, 4, 2); });
}

}  // namespace

int main(int argc, char** argv) {
  Rng rng(seed_from_args(argc, argv, "pool_test"));
  const auto isas = runnable_isas();
  Results results;
  // EfficientFormer's four Meta4D stages: 56² / 28² / 14² / 7² at widths L1 48/96/224/448, L3 64/128/320/512,
  // L7 96/192/384/768 (one image each; the batch split is covered below).
  const int64_t widths[3][4] = {{48, 96, 224, 448}, {64, 128, 320, 512}, {96, 192, 384, 768}};
  const int64_t sides[4] = {56, 28, 14, 7};
  for (const auto& model : widths)
    for (int stage = 0; stage < 4; ++stage)
      check_case(results, Case({1, sides[stage], sides[stage], model[stage]}, rng), isas);
  // Odd maps (1×1, 2×3, 5×7, one row, one column), widths off the vector widths, pool sizes 1 and 5, strides.
  for (const Shape& s : std::vector<Shape>{{2, 1, 1, 3}, {3, 2, 3, 17}, {2, 5, 7, 1}, {1, 1, 9, 20}, {2, 8, 1, 16},
                                           {2, 5, 7, 33, 5}, {1, 4, 6, 9, 1}, {2, 7, 7, 48, 3, 3, 0},
                                           {2, 5, 7, 17, 3, 0, 11}, {1, 3, 4, 5, 7, 2, 3}})
    check_case(results, Case(s, rng), isas);
  check_special_values(results, rng, isas);
  return results.finish();
}
