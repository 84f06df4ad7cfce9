// Torch custom ops on CPU: levit_kernels::conv2d (weight packed per call), ::conv_pack and ::conv2d_packed (weight
// packed once by the caller, as the optimized stem does). Channels-last in and out: x (B, H, W, Cin) of any
// strides, out (B, Ho, Wo, Cout) contiguous. Argument checks, output allocation, ISA dispatch and the thread split
// live here; the gather and the tile driver are in conv_block.cpp, the FMAs in the ISA's GEMM kernels.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <optional>
#include <string_view>

#include "common/activation_arg.h"
#include "common/isa.h"
#include "common/output.h"
#include "common/thread_split.h"
#include "common/workspace.h"
#include "conv/conv.h"
#include "gemm/packed_weights.h"

namespace levit::conv {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

void check_float_cpu(const char* op, const char* arg, const at::Tensor& t, int64_t dim, const char* shape_doc) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat, op, ": argument '", arg, "' must be float32, got ",
                   t.scalar_type());
  TORCH_CHECK(t.device().is_cpu(), op, ": argument '", arg, "' must be a CPU tensor, got one on ", t.device());
  TORCH_CHECK_VALUE(t.dim() == dim, op, ": argument '", arg, "' must be ", dim, "-D ", shape_doc, ", got shape ",
                    t.sizes());
}

// A pair of ints (stride or padding) with every element >= `least`.
void check_pair(const char* op, const char* arg, at::IntArrayRef v, int64_t least) {
  TORCH_CHECK_VALUE(v.size() == 2 && v[0] >= least && v[1] >= least, op, ": argument '", arg,
                    "' must be two ints >= ", least, ", got ", v);
}

// Everything but the weight's data: shapes from x and the kernel geometry, output sides checked >= 1.
ConvArgs describe(const char* op, const at::Tensor& x, int64_t cout, int64_t kh, int64_t kw,
                  const std::optional<at::Tensor>& bias, at::IntArrayRef stride, at::IntArrayRef padding,
                  Activation act) {
  check_float_cpu(op, "x", x, 4, "(B, H, W, C_in)");
  check_pair(op, "stride", stride, 1);
  check_pair(op, "padding", padding, 0);
  if (bias) {
    check_float_cpu(op, "bias", *bias, 1, "(C_out,)");
    TORCH_CHECK_VALUE(bias->size(0) == cout, op, ": argument 'bias' must be of size ", cout,
                      " in dim 0 (output channels), got shape ", bias->sizes());
  }
  ConvArgs a{};
  a.x = x.const_data_ptr<float>();
  a.sb = x.stride(0), a.sh = x.stride(1), a.sw = x.stride(2), a.sc = x.stride(3);
  a.batch = x.size(0), a.h = x.size(1), a.w = x.size(2), a.cin = x.size(3);
  a.kh = kh, a.kw = kw;
  a.stride_h = stride[0], a.stride_w = stride[1];
  a.pad_h = padding[0], a.pad_w = padding[1];
  a.ho = output_side(a.h, kh, a.stride_h, a.pad_h);
  a.wo = output_side(a.w, kw, a.stride_w, a.pad_w);
  TORCH_CHECK_VALUE(a.ho >= 1 && a.wo >= 1, op, ": argument 'x' must have H + 2·padding >= ", kh,
                    " and W + 2·padding >= ", kw, " (the kernel size), got shape ", x.sizes(), " with padding ",
                    padding);
  a.cout = cout;
  a.act = act;
  return a;
}

// One share of output pixels × panels per thread, as the linear op splits (common/thread_split.h), rows preferred
// on equal cost (each column share gathers its pixels' patches again); each share in blocks of conv_tile_rows.
void run_conv(const Kernels& kernels, const ConvArgs& a) {
  const gemm::Geometry& g = kernels.gemm->geometry;
  const int64_t m = a.batch * a.ho * a.wo, k = patch_width(a), target = conv_tile_rows(g, k);
  const ThreadSplit split(m, a.cout, g.mr, g.nr, threads_for(m * k * a.cout), /*allow_columns=*/true,
                          /*prefer_rows=*/true);
  split.run([&](const Share& s) {
    float* scratch = thread_workspace(static_cast<size_t>(std::min(target, s.m1 - s.m0) * std::max<int64_t>(k, 1)));
    for_each_row_block(s.m0, s.m1, target, g.mr,
                       [&](int64_t m0, int64_t m1) { conv_block(kernels, a, m0, m1, s.n0, s.n1, scratch); });
  });
}

at::Tensor conv_forward(const Kernels& kernels, ConvArgs a, const at::Tensor& x, const at::Tensor& packed,
                        const std::optional<at::Tensor>& bias) {
  at::Tensor out = new_output({a.batch, a.ho, a.wo, a.cout}, x.options());
  if (out.numel() == 0) return out;
  const at::Tensor bias_c = bias ? bias->contiguous() : at::Tensor();
  a.packed = packed.const_data_ptr<float>();
  a.bias = bias ? bias_c.const_data_ptr<float>() : nullptr;
  a.out = out.mutable_data_ptr<float>();
  run_conv(kernels, a);
  return out;
}

// (Cout, Cin, kh, kw) → the GEMM's (Cout, K) with K ordered (ky, kx, ci), packed for panel width nr.
at::Tensor pack(const at::Tensor& weight, int nr) {
  const at::Tensor w2 = weight.permute({0, 2, 3, 1}).contiguous().view({weight.size(0), -1});
  return gemm::pack_weight_tensor(w2, nr);
}

void check_weight(const char* op, const at::Tensor& weight) {
  check_float_cpu(op, "weight", weight, 4, "(C_out, C_in, kh, kw)");
  TORCH_CHECK_VALUE(weight.size(2) >= 1 && weight.size(3) >= 1, op,
                    ": argument 'weight' must have a kernel of at least 1×1, got shape ", weight.sizes());
}

at::Tensor conv2d(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                  at::IntArrayRef stride, at::IntArrayRef padding, std::optional<std::string_view> activation) {
  constexpr const char* op = "conv2d";
  check_weight(op, weight);
  const Activation act = parse_activation(op, activation);
  ConvArgs a = describe(op, x, weight.size(0), weight.size(2), weight.size(3), bias, stride, padding, act);
  TORCH_CHECK_VALUE(weight.size(1) == a.cin, op, ": argument 'weight' must be of size ", a.cin,
                    " in dim 1 (channels of x), got shape ", weight.sizes());
  const Kernels& kernels = kernels_for(active_isa());
  return conv_forward(kernels, a, x, pack(weight, kernels.gemm->geometry.nr), bias);
}

at::Tensor conv2d_packed(const at::Tensor& x, const at::Tensor& packed_weight, int64_t out_channels,
                         at::IntArrayRef kernel_size, const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                         at::IntArrayRef padding, std::optional<std::string_view> activation) {
  constexpr const char* op = "conv2d_packed";
  TORCH_CHECK_VALUE(out_channels >= 1, op, ": argument 'out_channels' must be >= 1, got ", out_channels);
  check_pair(op, "kernel_size", kernel_size, 1);
  const Activation act = parse_activation(op, activation);
  ConvArgs a = describe(op, x, out_channels, kernel_size[0], kernel_size[1], bias, stride, padding, act);
  const Kernels& kernels = kernels_for(active_isa());
  const int nr = kernels.gemm->geometry.nr;
  check_float_cpu(op, "packed_weight", packed_weight, 3, "(panels, K, nr) from conv_pack");
  TORCH_CHECK_VALUE(packed_weight.size(2) == nr, op, ": argument 'packed_weight' was packed for panel width ",
                    packed_weight.size(2), " but the active ISA (", isa_name(active_isa()), ") uses ", nr,
                    "; pack the weight again (conv_pack) under this ISA");
  const int64_t k = patch_width(a);
  TORCH_CHECK_VALUE(packed_weight.size(0) == ceil_div(out_channels, nr) && packed_weight.size(1) == k, op,
                    ": argument 'packed_weight' must be the packed form of a (", out_channels, ", ", a.cin, ", ",
                    a.kh, ", ", a.kw, ") weight (out_channels, channels of x, kernel_size), i.e. of shape [",
                    ceil_div(out_channels, nr), ", ", k, ", ", nr, "], got ", packed_weight.sizes());
  TORCH_CHECK_VALUE(packed_weight.is_contiguous(), op,
                    ": argument 'packed_weight' must be contiguous (as conv_pack returns it)");
  return conv_forward(kernels, a, x, packed_weight, bias);
}

// The packed form conv2d_packed takes, for the active ISA: (ceil(Cout / nr), kh·kw·Cin, nr).
at::Tensor conv_pack(const at::Tensor& weight) {
  check_weight("conv_pack", weight);
  const int nr = kernels_for(active_isa()).gemm->geometry.nr;
  const int64_t k = weight.size(1) * weight.size(2) * weight.size(3);
  return pack(weight, nr).view({ceil_div(weight.size(0), nr), k, nr});
}

}  // namespace
}  // namespace levit::conv

TORCH_LIBRARY_FRAGMENT(levit_kernels, m) {
  m.def("conv2d(Tensor x, Tensor weight, Tensor? bias, int[2] stride, int[2] padding, str? activation) -> Tensor");
  m.def("conv_pack(Tensor weight) -> Tensor");
  m.def("conv2d_packed(Tensor x, Tensor packed_weight, int out_channels, int[2] kernel_size, Tensor? bias, "
        "int[2] stride, int[2] padding, str? activation) -> Tensor");
}

TORCH_LIBRARY_IMPL(levit_kernels, CPU, m) {
  m.impl("conv2d", &levit::conv::conv2d);
  m.impl("conv_pack", &levit::conv::conv_pack);
  m.impl("conv2d_packed", &levit::conv::conv2d_packed);
}
