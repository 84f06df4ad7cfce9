// Standalone (torch-free) test of the flash attention kernel (csrc/flash): every ISA variant runnable here against a
// float64 reference and against the scalar variant, from one query and one key up to N = 3136 (T2T-ViT's first
// token layer), odd N and head dims, Dv ≠ D, Nq ≠ Nk, q/k/v as views of a packed qkv buffer or with element
// strides, a dense bias in several broadcast forms, outputs and workspaces poisoned with NaN, and the work split
// over several "threads" (item ranges with their own workspaces, planned for 1 and for 8 threads). Also NaN/inf
// inputs and masked rows: every variant must give the scalar variant's NaN/inf pattern.
// Usage: flash_test [seed]
#include "flash/flash_kernel.h"
#include "tests/harness.h"

using namespace levit;
using namespace levit::test;
using flash::Problem;

namespace {

enum class Layout { kContiguous, kPackedQkv, kStrided };
const char* layout_name(Layout l) {
  return l == Layout::kContiguous ? "contiguous" : l == Layout::kPackedQkv ? "packed-qkv" : "strided";
}

// Which dims of (B, H, Nq, Nk) the bias spans (the others broadcast, stride 0).
enum class Bias { kNone, kFull, kPerHeadShared, kKeyMask };
const char* bias_name(Bias b) {
  return b == Bias::kNone ? "none" : b == Bias::kFull ? "(B,H,Nq,Nk)" : b == Bias::kPerHeadShared ? "(1,H,Nq,Nk)"
                                                                                                     : "(B,1,1,Nk)";
}

struct Shape {
  int batch, heads, nq, nk, key_dim, value_dim;
  Bias bias = Bias::kNone;
  Activation activation = Activation::kNone;
};

struct Case {
  Shape s;
  Layout layout;
  std::vector<float> qkv, q_buf, k_buf, v_buf, bias;
  Problem p;

  Case(const Shape& shape, Layout layout, Rng& rng) : s(shape), layout(layout) {
    p.batch = s.batch, p.heads = s.heads, p.num_queries = s.nq, p.num_keys = s.nk;
    p.key_dim = s.key_dim, p.value_dim = s.value_dim;
    p.activation = s.activation;
    p.scale = 1.0f / std::sqrt(static_cast<float>(s.key_dim));
    const int64_t B = s.batch, H = s.heads, D = s.key_dim, Dv = s.value_dim, nq = s.nq, nk = s.nk;
    if (layout == Layout::kPackedQkv && nq == nk) {
      const int64_t e = 2 * D + Dv;
      qkv = rng.normal(B * nk * H * e);
      const int64_t st[4] = {nk * H * e, e, H * e, 1};
      set_view(p.q, qkv.data(), st);
      set_view(p.k, qkv.data() + D, st);
      set_view(p.v, qkv.data() + 2 * D, st);
    } else if (layout == Layout::kStrided) {  // q stride 2, k stored (B, H, D, Nk), v stride 3
      q_buf = rng.normal(B * H * nq * D * 2), k_buf = rng.normal(B * H * nk * D);
      v_buf = rng.normal(B * H * nk * Dv * 3);
      const int64_t sq[4] = {H * nq * D * 2, nq * D * 2, D * 2, 2}, sk[4] = {H * D * nk, D * nk, 1, nk},
                    sv[4] = {H * nk * Dv * 3, nk * Dv * 3, Dv * 3, 3};
      set_view(p.q, q_buf.data(), sq);
      set_view(p.k, k_buf.data(), sk);
      set_view(p.v, v_buf.data(), sv);
    } else {
      q_buf = rng.normal(B * H * nq * D), k_buf = rng.normal(B * H * nk * D), v_buf = rng.normal(B * H * nk * Dv);
      const int64_t sq[4] = {H * nq * D, nq * D, D, 1}, sk[4] = {H * nk * D, nk * D, D, 1},
                    sv[4] = {H * nk * Dv, nk * Dv, Dv, 1};
      set_view(p.q, q_buf.data(), sq);
      set_view(p.k, k_buf.data(), sk);
      set_view(p.v, v_buf.data(), sv);
    }
    if (s.bias == Bias::kFull) {
      bias = rng.normal(B * H * nq * nk);
      const int64_t st[4] = {H * nq * nk, nq * nk, nk, 1};
      std::copy(st, st + 4, p.bias_stride);
    } else if (s.bias == Bias::kPerHeadShared) {  // stored transposed: (H, Nk, Nq)
      bias = rng.normal(H * nq * nk);
      const int64_t st[4] = {0, nq * nk, 1, nq};
      std::copy(st, st + 4, p.bias_stride);
    } else if (s.bias == Bias::kKeyMask) {  // every third key masked out
      bias = rng.normal(B * nk);
      for (size_t i = 0; i < bias.size(); i += 3) bias[i] = -std::numeric_limits<float>::infinity();
      const int64_t st[4] = {nk, 0, 0, 1};
      std::copy(st, st + 4, p.bias_stride);
    }
    p.bias = bias.empty() ? nullptr : bias.data();
  }

  static void set_view(attention::View4& v, const float* data, const int64_t (&st)[4]) {
    v.data = data;
    for (int i = 0; i < 4; ++i) v.stride[i] = st[i];
  }

  double bias_at(int b, int h, int i, int j) const {
    if (p.bias == nullptr) return 0.0;
    const int64_t* st = p.bias_stride;
    return p.bias[b * st[0] + h * st[1] + i * st[2] + j * st[3]];
  }

  // act(softmax(scale·q·kᵀ + bias) · v) in float64, (B, Nq, H·Dv).
  std::vector<double> reference() const {
    std::vector<double> out(static_cast<size_t>(p.batch) * p.num_queries * p.heads * p.value_dim);
    std::vector<double> w(p.num_keys);
    for (int b = 0; b < p.batch; ++b)
      for (int h = 0; h < p.heads; ++h)
        for (int i = 0; i < p.num_queries; ++i) {
          const float* q = p.q.row(b, h, i);
          double mx = -INFINITY, sum = 0.0;
          for (int j = 0; j < p.num_keys; ++j) {
            const float* k = p.k.row(b, h, j);
            double dot = 0.0;
            for (int d = 0; d < p.key_dim; ++d)
              dot += static_cast<double>(q[d * p.q.stride[3]]) * k[d * p.k.stride[3]];
            w[j] = dot * static_cast<double>(p.scale) + bias_at(b, h, i, j);
            mx = std::max(mx, w[j]);
          }
          for (int j = 0; j < p.num_keys; ++j) sum += (w[j] = std::exp(w[j] - mx));
          for (int c = 0; c < p.value_dim; ++c) {
            double o = 0.0;
            for (int j = 0; j < p.num_keys; ++j) o += w[j] / sum * p.v.row(b, h, j)[c * p.v.stride[3]];
            out[((static_cast<size_t>(b) * p.num_queries + i) * p.heads + h) * p.value_dim + c] =
                activation_ref(s.activation, o);
          }
        }
    return out;
  }

  std::string describe() const {
    char buf[200];
    std::snprintf(buf, sizeof buf, "attention B=%d H=%d Nq=%d Nk=%d D=%d Dv=%d bias=%s act=%s %s", p.batch, p.heads,
                  p.num_queries, p.num_keys, p.key_dim, p.value_dim, bias_name(s.bias),
                  activation_name(s.activation), layout_name(layout));
    return buf;
  }
};

// Runs `isa` over all items (planned for `planned_threads`) as `threads` consecutive ranges, each with its own
// poisoned workspace.
std::vector<float> run(const Case& c, Isa isa, int threads, int planned_threads) {
  Problem p = c.p;
  const flash::Plan plan = flash::make_plan(p, planned_threads);
  std::vector<float> out(static_cast<size_t>(p.batch) * p.num_queries * p.heads * p.value_dim, kNaN);
  p.out = out.data();
  for (int t = 0; t < threads; ++t) {
    AlignedBuffer workspace(plan.workspace_floats);
    flash::kernel_for(isa)(p, plan, plan.items * t / threads, plan.items * (t + 1) / threads, workspace.data());
  }
  return out;
}

void check_case(Results& results, const Case& c, const std::vector<Isa>& isas, int planned_threads) {
  const auto ref = c.reference();
  const auto scalar = run(c, Isa::kScalar, 3, planned_threads);
  for (Isa isa : isas) {
    const auto out = isa == Isa::kScalar ? scalar : run(c, isa, 3, planned_threads);
    const double err = max_rel_error(out.data(), ref.data(), ref.size());
    results.check(err <= kFp32Rtol, "%s %s (planned for %d threads): max rel error vs float64 %.3e > %.1e",
                  isa_name(isa), c.describe().c_str(), planned_threads, err, kFp32Rtol);
    if (isa != Isa::kScalar) {
      const double diff = max_rel_error(out.data(), scalar.data(), scalar.size());
      results.check(diff <= kFp32Rtol, "%s %s: max rel difference vs scalar %.3e", isa_name(isa),
                    c.describe().c_str(), diff);
    }
  }
}

// NaN/inf in the inputs and masked rows: every variant gives the scalar variant's pattern and agrees elsewhere
// (the Python tests check the pattern against torch's).
void check_special_values(Results& results, Rng& rng, const std::vector<Isa>& isas) {
  const float inf = std::numeric_limits<float>::infinity();
  Case c({2, 3, 20, 300, 8, 12, Bias::kFull}, Layout::kContiguous, rng);
  const int nq = 20, nk = 300, D = 8, Dv = 12;
  c.q_buf[(0 * 3 + 0) * nq * D + 3 * D + 1] = kNaN;        // one query row → NaN
  c.k_buf[(1 * 3 + 1) * nk * D + 7 * D + 2] = inf;         // (1, 1): ±inf scores
  c.v_buf[(0 * 3 + 2) * nk * Dv + 250 * Dv + 5] = inf;     // (0, 2): column 5 +inf
  auto bias_row = [&](int b, int h, int i) { return c.bias.data() + ((b * 3 + h) * nq + i) * nk; };
  std::fill(bias_row(0, 1, 4), bias_row(0, 1, 4) + nk, -inf);        // fully masked row → NaN
  std::fill(bias_row(0, 1, 5), bias_row(0, 1, 5) + 290, -inf);       // masked prefix over several key blocks
  const auto scalar = run(c, Isa::kScalar, 1, 1);
  const auto ref = c.reference();
  size_t finite_scalar = 0;
  for (size_t i = 0; i < scalar.size(); ++i) finite_scalar += std::isfinite(scalar[i]);
  results.check(std::isnan(scalar[(0 * nq + 4) * 3 * Dv + 1 * Dv]) && std::isfinite(scalar[(0 * nq + 5) * 3 * Dv + Dv]) &&
                    finite_scalar > 0 && finite_scalar < scalar.size(),
                "scalar special values: masked row not NaN, masked prefix not finite, or no finite/non-finite mix");
  for (Isa isa : isas) {
    if (isa == Isa::kScalar) continue;
    const auto out = run(c, isa, 2, 8);
    size_t mismatched = 0;
    double err = 0.0;
    for (size_t i = 0; i < out.size(); ++i) {
      if (std::isnan(out[i]) || std::isnan(scalar[i]) || std::isinf(out[i]) || std::isinf(scalar[i]))
        mismatched += !(std::isnan(out[i]) == std::isnan(scalar[i]) && (std::isnan(out[i]) || out[i] == scalar[i]));
      else
        err = std::max(err, std::abs(static_cast<double>(out[i]) - ref[i]));
    }
    results.check(mismatched == 0 && err <= kFp32Rtol * 10, "%s special values: %zu NaN/inf mismatches, max err %.3e",
                  isa_name(isa), mismatched, err);
  }
}

std::vector<Shape> shapes() {
  return {
      {1, 1, 1, 1, 64, 64},                     // one query, one key
      {2, 3, 1, 2, 8, 16},
      {1, 2, 130, 1, 13, 64, Bias::kFull},      // one key: each row is that key's value
      {3, 1, 7, 300, 16, 33, Bias::kKeyMask},   // several key blocks, a third of the keys masked
      {2, 2, 37, 50, 24, 20, Bias::kPerHeadShared, Activation::kHardswish},
      {1, 2, 50, 37, 5, 7, Bias::kFull},        // odd D and Dv
      {2, 2, 197, 197, 64, 64},                 // the T2T-ViT backbone
      {1, 1, 784, 784, 64, 64},                 // T2T-ViT token layer 2
      {1, 1, 100, 3136, 64, 64},                // token layer 1's keys (its 3136 queries: the Python tests)
      {1, 3, 49, 49, 64, 24, Bias::kNone, Activation::kGelu},
      {2, 1, 33, 70, 16, 40, Bias::kKeyMask, Activation::kRelu},
  };
}

}  // namespace

int main(int argc, char** argv) {
  Rng rng(seed_from_args(argc, argv, "flash_test"));
  const std::vector<Isa> isas = runnable_isas();
  Results results;
  for (const Shape& s : shapes())
    for (Layout layout : {Layout::kContiguous, Layout::kPackedQkv, Layout::kStrided}) {
      if (layout == Layout::kPackedQkv && s.nq != s.nk) continue;
      const Case c(s, layout, rng);
      check_case(results, c, isas, layout == Layout::kStrided ? 8 : 1);
    }
  check_special_values(results, rng, isas);
  return results.finish();
}
