// Standalone (torch-free) test of the attention kernels (csrc/attention): every ISA variant runnable here against a
// float64 reference and against the scalar variant, at LeViT shapes and odd shapes, with q/k/v as strided views
// of a packed qkv buffer and other non-contiguous layouts, square and non-square (Rh ≠ Rw, odd sides) key grids, outputs and workspaces poisoned with NaN, and the work
// split over several "threads" (item ranges with their own workspaces). Also NaN/inf inputs: every variant must
// give the scalar variant's NaN/inf pattern.
// Usage: attention_test [seed]
#include "attention/attention_kernel.h"
#include "tests/harness.h"

using namespace levit;
using namespace levit::test;
using attention::Problem;

namespace {

// How q/k/v (and x, q_weight for shrink) are laid out in memory.
enum class Layout {
  kContiguous,  // (B, H, N, ·) row-major
  kPackedQkv,   // views of one (B, N, H, D + D + Dv) buffer permuted to (B, H, N, ·), as LeViT's qkv projection
  kStrided,     // q and v with element strides 2 and 3, k stored (B, H, D, N), x with channel stride 2,
                // q_weight stored transposed, bias table transposed
};
const char* layout_name(Layout l) {
  return l == Layout::kContiguous ? "contiguous" : l == Layout::kPackedQkv ? "packed-qkv" : "strided";
}

struct Shape {
  int batch, heads, resolution, stride, key_dim, value_dim;
  int channels = 0;  // > 0: shrink_attention with C input channels
  Activation act = Activation::kNone;
  int resolution_w = 0;  // > 0: keys on the resolution × resolution_w grid (else square)
};

// One test problem: the buffers behind the views and the kernel's Problem pointing into them.
struct Case {
  Shape shape;
  Layout layout;
  std::vector<float> qkv, q_buf, k_buf, v_buf, bias, x, q_weight, q_bias;
  Problem p;

  Case(const Shape& s, Layout layout, Rng& rng) : shape(s), layout(layout) {
    p.batch = s.batch, p.heads = s.heads, p.key_dim = s.key_dim, p.value_dim = s.value_dim;
    p.grid_h = s.resolution, p.grid_w = s.resolution_w > 0 ? s.resolution_w : s.resolution;
    p.stride = s.stride, p.activation = s.act;
    p.scale = 1.0f / std::sqrt(static_cast<float>(s.key_dim));
    const int64_t B = s.batch, H = s.heads, D = s.key_dim, Dv = s.value_dim, nk = p.num_keys(),
                  nq = p.num_queries();
    const bool shrink = s.channels > 0;
    if (layout == Layout::kPackedQkv && !shrink && nq == nk) {
      const int64_t e = 2 * D + Dv;  // per-head row of the packed buffer: q | k | v
      qkv = rng.normal(B * nk * H * e);
      const int64_t st[4] = {nk * H * e, e, H * e, 1};
      set_view(p.q, qkv.data(), st);
      set_view(p.k, qkv.data() + D, st);
      set_view(p.v, qkv.data() + 2 * D, st);
    } else if (layout == Layout::kStrided) {
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
    bias = rng.normal(H * nk);
    p.bias = bias.data();
    p.bias_stride[0] = layout == Layout::kStrided ? 1 : nk;
    p.bias_stride[1] = layout == Layout::kStrided ? H : 1;
    if (shrink) {
      const int64_t C = s.channels, cs = layout == Layout::kStrided ? 2 : 1;
      p.q = {};
      p.channels = s.channels;
      x = rng.normal(B * nk * C * cs);
      p.x = x.data();
      p.x_stride[0] = nk * C * cs, p.x_stride[1] = C * cs, p.x_stride[2] = cs;
      q_weight = rng.normal(H * D * C, 1.0f / std::sqrt(static_cast<float>(C)));
      p.q_weight = q_weight.data();
      p.q_weight_stride[0] = layout == Layout::kStrided ? 1 : C;
      p.q_weight_stride[1] = layout == Layout::kStrided ? H * D : 1;
      q_bias = rng.normal(H * D);
      p.q_bias = q_bias.data();
      p.q_bias_stride = 1;
    }
  }

  static void set_view(attention::View4& v, const float* data, const int64_t (&st)[4]) {
    v.data = data;
    for (int i = 0; i < 4; ++i) v.stride[i] = st[i];
  }

  double q_at(int b, int h, int i, int d) const {
    if (!p.shrink()) return p.q.row(b, h, i)[d * p.q.stride[3]];
    const int cols = p.query_w(), tok = i / cols * p.stride * p.grid_w + i % cols * p.stride;
    const float* xr = p.x + b * p.x_stride[0] + tok * p.x_stride[1];
    const int64_t o = static_cast<int64_t>(h) * p.key_dim + d;
    double acc = p.q_bias[o * p.q_bias_stride];
    for (int c = 0; c < p.channels; ++c)
      acc += static_cast<double>(xr[c * p.x_stride[2]]) *
             p.q_weight[o * p.q_weight_stride[0] + c * p.q_weight_stride[1]];
    return acc;
  }

  // act(softmax(scale·q·kᵀ + bias) · v) in float64, (B, Nq, H·Dv).
  std::vector<double> reference() const {
    const int nq = p.num_queries(), nk = p.num_keys(), cols = p.query_w(), Rw = p.grid_w;
    std::vector<double> out(static_cast<size_t>(p.batch) * nq * p.heads * p.value_dim);
    std::vector<double> q(p.key_dim), w(nk);
    for (int b = 0; b < p.batch; ++b)
      for (int h = 0; h < p.heads; ++h)
        for (int i = 0; i < nq; ++i) {
          for (int d = 0; d < p.key_dim; ++d) q[d] = q_at(b, h, i, d);
          const int yq = i / cols * p.stride, xq = i % cols * p.stride;
          double mx = -INFINITY, sum = 0.0;
          for (int j = 0; j < nk; ++j) {
            double s = 0.0;
            for (int d = 0; d < p.key_dim; ++d) s += q[d] * p.k.row(b, h, j)[d * p.k.stride[3]];
            const int idx = std::abs(yq - j / Rw) * Rw + std::abs(xq - j % Rw);
            w[j] = s * static_cast<double>(p.scale) + p.bias[h * p.bias_stride[0] + idx * p.bias_stride[1]];
            mx = std::max(mx, w[j]);
          }
          for (int j = 0; j < nk; ++j) sum += (w[j] = std::exp(w[j] - mx));
          for (int c = 0; c < p.value_dim; ++c) {
            double o = 0.0;
            for (int j = 0; j < nk; ++j) o += w[j] / sum * p.v.row(b, h, j)[c * p.v.stride[3]];
            out[((static_cast<size_t>(b) * nq + i) * p.heads + h) * p.value_dim + c] = activation_ref(p.activation, o);
          }
        }
    return out;
  }

  std::string describe() const {
    char buf[200];
    std::snprintf(buf, sizeof buf, "%s B=%d H=%d R=%dx%d s=%d D=%d Dv=%d C=%d act=%s %s",
                  p.shrink() ? "shrink_attention" : "biased_attention", p.batch, p.heads, p.grid_h, p.grid_w, p.stride,
                  p.key_dim, p.value_dim, p.channels, activation_name(p.activation), layout_name(layout));
    return buf;
  }
};

// Runs `isa` over all items as `threads` consecutive item ranges, each with its own poisoned workspace.
std::vector<float> run(const Case& c, Isa isa, int threads) {
  Problem p = c.p;
  const attention::Kernels& kernels = attention::kernels_for(isa);
  const attention::Plan plan = attention::make_plan(p, kernels.geometry);
  std::vector<float> out(static_cast<size_t>(p.batch) * p.num_queries() * p.heads * p.value_dim, kNaN);
  p.out = out.data();
  for (int t = 0; t < threads; ++t) {
    AlignedBuffer workspace(plan.workspace_floats);
    kernels.run(p, plan, plan.items * t / threads, plan.items * (t + 1) / threads, workspace.data());
  }
  return out;
}

void check_case(Results& results, const Case& c, const std::vector<Isa>& isas) {
  const auto ref = c.reference();
  const auto scalar = run(c, Isa::kScalar, 3);
  for (Isa isa : isas) {
    const auto out = isa == Isa::kScalar ? scalar : run(c, isa, 3);
    const double err = max_rel_error(out.data(), ref.data(), ref.size());
    results.check(err <= kFp32Rtol, "%s %s: max rel error vs float64 %.3e > %.1e", isa_name(isa),
                  c.describe().c_str(), err, kFp32Rtol);
    if (isa != Isa::kScalar) {
      const double diff = max_rel_error(out.data(), scalar.data(), scalar.size());
      results.check(diff <= kFp32Rtol, "%s %s: max rel difference vs scalar %.3e", isa_name(isa),
                    c.describe().c_str(), diff);
    }
  }
}

// NaN/inf in the inputs: every variant gives the scalar variant's pattern (NaN where NaN, ±inf where ±inf) and
// agrees elsewhere. The Python tests check the scalar pattern against torch's.
void check_special_values(Results& results, Rng& rng, const std::vector<Isa>& isas) {
  const float inf = std::numeric_limits<float>::infinity();
  Case c({2, 3, 5, 1, 8, 12}, Layout::kContiguous, rng);
  c.q_buf[3] = kNaN;                       // one query row of head 0, batch 0 → that row NaN
  c.v_buf[c.v_buf.size() - 5] = inf;       // one value of the last (b, h): its column +inf
  c.bias[1 * 25 + 7] = -inf;               // head 1: one relative offset masked out
  for (int d = 0; d < 8; ++d) c.k_buf[(1 * 3 + 2) * 25 * 8 + 4 * 8 + d] = 0.0f;
  std::fill(c.bias.begin() + 2 * 25, c.bias.begin() + 3 * 25, -inf);  // head 2: every score -inf → NaN rows
  const auto scalar = run(c, Isa::kScalar, 1);
  for (Isa isa : isas) {
    if (isa == Isa::kScalar) continue;
    const auto out = run(c, isa, 2);
    size_t mismatched = 0;
    double err = 0.0;
    for (size_t i = 0; i < out.size(); ++i) {
      if (std::isnan(out[i]) || std::isnan(scalar[i]) || std::isinf(out[i]) || std::isinf(scalar[i]))
        mismatched += !(std::isnan(out[i]) == std::isnan(scalar[i]) && (std::isnan(out[i]) || out[i] == scalar[i]));
      else
        err = std::max(err, std::abs(static_cast<double>(out[i]) - scalar[i]));
    }
    results.check(mismatched == 0 && err <= kFp32Rtol * 10, "%s special values: %zu NaN/inf mismatches, max diff %.3e",
                  isa_name(isa), mismatched, err);
  }
}

std::vector<Shape> levit_shapes() {
  // (widths, key dim, heads per stage) of LeViT-128S, 128, 192, 256, 384 (the Python tests take them from
  // levit.config); batch 1.
  struct Variant {
    int c[3], d, heads[3];
  };
  const Variant variants[] = {{{128, 256, 384}, 16, {4, 6, 8}},
                              {{128, 256, 384}, 16, {4, 8, 12}},
                              {{192, 288, 384}, 32, {3, 5, 6}},
                              {{256, 384, 512}, 32, {4, 6, 8}},
                              {{384, 512, 768}, 32, {6, 9, 12}}};
  const int res[3] = {14, 7, 4};
  std::vector<Shape> shapes;
  for (const Variant& v : variants) {
    for (int s = 0; s < 3; ++s) shapes.push_back({1, v.heads[s], res[s], 1, v.d, 2 * v.d, 0, Activation::kHardswish});
    for (int s = 0; s < 2; ++s) shapes.push_back({1, v.c[s] / v.d, res[s], 2, v.d, 4 * v.d, v.c[s]});
  }
  // EfficientFormer's Meta3D attention (8 heads, key dim 32, value dim 128, 7² tokens), batch 2, every activation.
  for (Activation act : kActivations) shapes.push_back({2, 8, 7, 1, 32, 128, 0, act});
  return shapes;
}

std::vector<Shape> odd_shapes() {
  std::vector<Shape> shapes;
  for (int r : {1, 3, 5, 13})
    for (int s : {1, 2}) {
      for (Activation act : kActivations) {
        shapes.push_back({1, 2, r, s, 8, 20, 0, act});
        shapes.push_back({1, 2, r, s, 8, 20, 24, act});
      }
      shapes.push_back({7, 1, r, s, 64, 9, 0, Activation::kGelu});
      shapes.push_back({3, 1, r, s, 64, 33, 13, Activation::kRelu});
    }
  shapes.push_back({1, 1, 16, 3, 5, 1, 0});  // stride 3, D and Dv odd
  shapes.push_back({2, 2, 20, 1, 24, 130, 0, Activation::kGelu});  // Nk = 400 > one score tile row budget
  // Non-square grids: Rh ≠ Rw, odd sides, wide and tall, strides 1 to 3 (the query grid ceil(Rh/s) × ceil(Rw/s)).
  for (const auto& hw : {std::pair{1, 7}, std::pair{7, 1}, std::pair{3, 5}, std::pair{5, 3}, std::pair{4, 13},
                         std::pair{13, 6}, std::pair{2, 21}})
    for (int s : {1, 2, 3}) {
      shapes.push_back({2, 2, hw.first, s, 8, 20, 0, Activation::kHardswish, hw.second});
      shapes.push_back({1, 3, hw.first, s, 16, 12, 24, Activation::kHardswish, hw.second});
    }
  shapes.push_back({1, 4, 28, 1, 16, 32, 0, Activation::kHardswish, 50});  // LeViT-128S stage 0 at 448×800
  shapes.push_back({1, 8, 14, 2, 16, 64, 128, Activation::kNone, 25});     // its first shrink (7×13 queries)
  return shapes;
}

}  // namespace

int main(int argc, char** argv) {
  Rng rng(seed_from_args(argc, argv, "attention_test"));
  const std::vector<Isa> isas = runnable_isas();
  Results results;
  for (const Shape& s : levit_shapes()) check_case(results, Case(s, Layout::kPackedQkv, rng), isas);
  for (const Shape& s : odd_shapes())
    for (Layout layout : {Layout::kContiguous, Layout::kPackedQkv, Layout::kStrided})
      check_case(results, Case(s, layout, rng), isas);
  check_special_values(results, rng, isas);
  return results.finish();
}
