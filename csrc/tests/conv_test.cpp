// Standalone (torch-free) test of the implicit-GEMM convolution (csrc/conv) on every ISA variant runnable here:
// against a float64 direct convolution, at the LeViT / EfficientFormer stem and downsampling shapes and odd ones
// (1×1 and 7×9 maps, padding larger than the map, a 1×1 and a 5×3 kernel, stride 1), every activation, with and
// without bias, NHWC input and an NCHW buffer read as NHWC through its strides, outputs poisoned with NaN and
// computed in pixel tiles × column blocks as the op's thread split cuts them (tile edges inside image rows and
// across images), by both paths: the gather + GEMM and the direct kernel.
// Usage: conv_test [seed]   (built and run by scripts/neon_test.sh)
#include "conv/conv.h"
#include "tests/harness.h"

using namespace levit;
using namespace levit::test;
using namespace levit::conv;

namespace {

struct ConvCase {
  int64_t batch, h, w, cin, cout, kh, kw, stride, pad;
  bool bias = true;
  Activation act = Activation::kNone;
  bool nchw = false;  // x stored (B, C, H, W), read through NHWC strides
};

// act(bias + conv) in float64; x_at(b, y, x, c) reads the input, w is (cout, cin, kh, kw) contiguous.
template <class At>
std::vector<double> conv_ref(const ConvCase& c, At x_at, const std::vector<float>& w, const float* bias,
                             int64_t ho, int64_t wo) {
  std::vector<double> out(c.batch * ho * wo * c.cout);
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t oy = 0; oy < ho; ++oy)
      for (int64_t ox = 0; ox < wo; ++ox)
        for (int64_t co = 0; co < c.cout; ++co) {
          double s = bias ? bias[co] : 0.0;
          for (int64_t ky = 0; ky < c.kh; ++ky)
            for (int64_t kx = 0; kx < c.kw; ++kx) {
              const int64_t iy = oy * c.stride - c.pad + ky, ix = ox * c.stride - c.pad + kx;
              if (iy < 0 || iy >= c.h || ix < 0 || ix >= c.w) continue;
              for (int64_t ci = 0; ci < c.cin; ++ci)
                s += double(x_at(b, iy, ix, ci)) * w[((co * c.cin + ci) * c.kh + ky) * c.kw + kx];
            }
          out[((b * ho + oy) * wo + ox) * c.cout + co] = activation_ref(c.act, s);
        }
  return out;
}

void check_conv(Results& results, Rng& rng, const std::vector<Isa>& isas, const ConvCase& c) {
  const int64_t k = c.kh * c.kw * c.cin;
  const auto x = rng.normal(c.batch * c.h * c.w * c.cin), w = rng.normal(c.cout * k, 1.0f / std::sqrt(k + 1.0f));
  const auto bias = rng.normal(c.cout);
  // NHWC strides, or those of a (B, C, H, W) buffer.
  const int64_t sb = c.h * c.w * c.cin, sh = c.nchw ? c.w : c.w * c.cin, sw = c.nchw ? 1 : c.cin,
                sc = c.nchw ? c.h * c.w : 1;
  auto x_at = [&](int64_t b, int64_t y, int64_t xx, int64_t ci) { return x[b * sb + y * sh + xx * sw + ci * sc]; };
  const int64_t ho = output_side(c.h, c.kh, c.stride, c.pad), wo = output_side(c.w, c.kw, c.stride, c.pad);
  const auto ref = conv_ref(c, x_at, w, c.bias ? bias.data() : nullptr, ho, wo);
  // The GEMM weight (cout, K) with K ordered (ky, kx, ci), as the op packs it.
  std::vector<float> w2(c.cout * k);
  for (int64_t co = 0; co < c.cout; ++co)
    for (int64_t ci = 0; ci < c.cin; ++ci)
      for (int64_t ky = 0; ky < c.kh; ++ky)
        for (int64_t kx = 0; kx < c.kw; ++kx)
          w2[co * k + (ky * c.kw + kx) * c.cin + ci] = w[((co * c.cin + ci) * c.kh + ky) * c.kw + kx];
  for (Isa isa : isas) {
    const Kernels& conv_kernels = kernels_for(isa);
    const gemm::Kernels& kern = *conv_kernels.gemm;
    const int nr = kern.geometry.nr;
    std::vector<float> packed(gemm::packed_floats(c.cout, k, nr), kNaN);
    gemm::pack_weight(w2.data(), k, 1, c.cout, k, nr, packed.data());
    // Both paths: the gather + GEMM and the direct kernel.
    for (const char* path : {"gather+GEMM", "direct"}) {
      const bool direct = path[0] == 'd';
      std::vector<float> out(ref.size(), kNaN);
      ConvArgs a{x.data(), sb, sh, sw, sc, c.batch, c.h, c.w, c.cin, c.kh, c.kw, c.stride, c.stride, c.pad, c.pad,
                 ho, wo, packed.data(), c.bias ? bias.data() : nullptr, out.data(), c.cout, c.act};
      // Tiles of 7 pixels (edges inside image rows) or the op's tile size; columns split after the first panel.
      const int64_t m = c.batch * ho * wo, rows = m > 64 ? conv_tile_rows(kern.geometry, k) : 7;
      const int64_t split = std::min<int64_t>(c.cout, nr);
      AlignedBuffer scratch(rows * k);
      for (int64_t m0 = 0; m0 < m; m0 += rows) {
        for (auto [n0, n1] : {std::pair<int64_t, int64_t>{0, split}, {split, c.cout}}) {
          if (direct)
            conv_kernels.direct(a, nr, m0, std::min(m, m0 + rows), n0, n1);
          else
            gather_gemm_block(kern, a, m0, std::min(m, m0 + rows), n0, n1, scratch.data());
        }
      }
      const double err = max_rel_error(out.data(), ref.data(), out.size());
      results.check(err <= kFp32Rtol,
                    "%s %s conv %lldx%lldx%lldx%lld -> %lld k%lldx%lld s%lld p%lld bias=%d act=%s nchw=%d: max rel "
                    "error vs float64 %.3e",
                    isa_name(isa), path, (long long)c.batch, (long long)c.h, (long long)c.w, (long long)c.cin,
                    (long long)c.cout, (long long)c.kh, (long long)c.kw, (long long)c.stride, (long long)c.pad,
                    c.bias, activation_name(c.act), c.nchw, err);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  Rng rng(seed_from_args(argc, argv, "conv_test"));
  const std::vector<Isa> isas = runnable_isas();
  Results results;
  // LeViT-128S stem at 224² (3→16→32→64→128, Hardswish between, none after the last) and LeViT-384's first
  // and last layers; EfficientFormer-L1's stem (3→24→48, ReLU) and a downsample (48→96 at 56²).
  const std::vector<ConvCase> model = {
      {1, 224, 224, 3, 16, 3, 3, 2, 1, true, Activation::kHardswish},
      {1, 112, 112, 16, 32, 3, 3, 2, 1, true, Activation::kHardswish},
      {1, 56, 56, 32, 64, 3, 3, 2, 1, true, Activation::kHardswish},
      {1, 28, 28, 64, 128, 3, 3, 2, 1, true, Activation::kNone},
      {1, 224, 224, 3, 48, 3, 3, 2, 1, true, Activation::kHardswish, true},  // straight from NCHW images
      {1, 28, 28, 192, 384, 3, 3, 2, 1, true, Activation::kNone},
      {1, 224, 224, 3, 24, 3, 3, 2, 1, true, Activation::kRelu},
      {1, 112, 112, 24, 48, 3, 3, 2, 1, true, Activation::kRelu},
      {2, 56, 56, 48, 96, 3, 3, 2, 1, true, Activation::kNone},
  };
  for (const ConvCase& c : model) check_conv(results, rng, isas, c);
  for (Activation act : kActivations)
    for (bool nchw : {false, true})
      for (bool bias : {false, true})
        for (ConvCase c : std::vector<ConvCase>{
                 {3, 7, 9, 3, 16, 3, 3, 2, 1}, {1, 1, 1, 5, 17, 3, 3, 2, 1}, {3, 33, 17, 16, 33, 3, 3, 2, 1},
                 {2, 9, 7, 6, 8, 3, 3, 1, 1}, {1, 2, 3, 4, 5, 3, 3, 2, 2},  // stride 1; padding beyond the map
                 {2, 6, 5, 7, 9, 1, 1, 1, 0}, {1, 11, 8, 3, 20, 5, 3, 2, 1}}) {  // 1×1 kernel; 5×3 kernel
          c.act = act, c.nchw = nchw, c.bias = bias;
          check_conv(results, rng, isas, c);
        }
  return results.finish();
}
