// Torch custom op levit_kernels::layer_norm on CPU: validate, allocate the output, pick the ISA variant and run the
// rows in parallel (at::parallel_for, so torch.set_num_threads applies). The fake (meta) implementation lives in
// levit_kernels/backends/cpu/norm_pool.py.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <optional>

#include "common/isa.h"
#include "common/output.h"
#include "layernorm/layernorm_kernel.h"

namespace levit::layernorm {
namespace {

constexpr const char* kOp = "layer_norm";

// Rows per task: about 16k floats (64 KiB) of input, so a task outweighs its hand-off between threads.
constexpr int64_t kTaskFloats = 16384;

void check_float_cpu(const char* arg, const at::Tensor& t) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat, kOp, ": argument '", arg, "' must be float32, got ",
                   t.scalar_type());
  TORCH_CHECK_VALUE(t.device().is_cpu(), kOp, ": argument '", arg, "' must be a CPU tensor, got one on ", t.device());
}

// weight or bias: (C,) float32; returned contiguous.
at::Tensor check_affine(const char* arg, const at::Tensor& t, int64_t channels) {
  check_float_cpu(arg, t);
  TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == channels, kOp, ": argument '", arg, "' must be of shape (",
                    channels, ",) (channels of x), got shape ", t.sizes());
  return t.contiguous();
}

at::Tensor layer_norm(const at::Tensor& x, const std::optional<at::Tensor>& weight,
                      const std::optional<at::Tensor>& bias, double eps) {
  check_float_cpu("x", x);
  TORCH_CHECK_VALUE(x.dim() >= 1 && x.size(-1) >= 1, kOp,
                    ": argument 'x' must have at least 1 dim and at least 1 channel (..., C), got shape ", x.sizes());
  TORCH_CHECK_VALUE(std::isfinite(eps) && eps >= 0.0, kOp, ": argument 'eps' must be finite and >= 0, got ", eps);
  const int64_t c = x.size(-1);
  const at::Tensor w = weight ? check_affine("weight", *weight, c) : at::Tensor();
  const at::Tensor b = bias ? check_affine("bias", *bias, c) : at::Tensor();
  at::Tensor out = new_output(x.sizes(), x.options());
  if (out.numel() == 0) return out;
  // (..., C) as (rows, C) with unit stride along C: a view when the leading dims collapse (row-strided slices do),
  // else a copy.
  at::Tensor x2 = x.reshape({-1, c});
  if (x2.stride(1) != 1 && c > 1) x2 = x2.contiguous();
  Problem p;
  p.x = x2.const_data_ptr<float>();
  p.ldx = x2.stride(0);
  p.out = out.mutable_data_ptr<float>();
  p.ldo = c;
  p.weight = weight ? w.const_data_ptr<float>() : nullptr;
  p.bias = bias ? b.const_data_ptr<float>() : nullptr;
  p.channels = c;
  p.eps = static_cast<float>(eps);
  const RowsFn rows = kernel_for(active_isa());
  at::parallel_for(0, x2.size(0), std::max<int64_t>(1, kTaskFloats / c),
                   [&](int64_t begin, int64_t end) { rows(p, begin, end); });
  return out;
}

}  // namespace
}  // namespace levit::layernorm

TORCH_LIBRARY_FRAGMENT(levit_kernels, m) {
  m.def("layer_norm(Tensor x, Tensor? weight, Tensor? bias, float eps) -> Tensor");
}

TORCH_LIBRARY_IMPL(levit_kernels, CPU, m) { m.impl("layer_norm", &levit::layernorm::layer_norm); }
