// Torch custom ops levit_kernels::biased_attention and levit_kernels::shrink_attention on CPU: validate, allocate
// the output, pick the ISA variant, and run the kernel's work items in parallel (at::parallel_for, so
// torch.set_num_threads applies). Fake (meta) implementations live in levit_kernels/backends/cpu/attention.py.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <string_view>

#include "attention/attention_kernel.h"
#include "common/activation_arg.h"
#include "common/isa.h"
#include "common/output.h"
#include "common/workspace.h"

namespace levit::attention {
namespace {

void check_float_cpu(const char* op, const char* name, const at::Tensor& t, int64_t dim) {
  TORCH_CHECK(t.device().is_cpu(), op, ": argument '", name, "' must be a CPU tensor, got one on ", t.device());
  TORCH_CHECK(t.scalar_type() == at::kFloat, op, ": argument '", name, "' must be float32, got ", t.scalar_type());
  TORCH_CHECK(t.dim() == dim, op, ": argument '", name, "' must be ", dim, "-D, got shape ", t.sizes());
}

void check_size(const char* op, const char* name, const at::Tensor& t, int64_t dim, int64_t expected,
                const char* meaning) {
  TORCH_CHECK(t.size(dim) == expected, op, ": argument '", name, "' must have size ", expected, " in dim ", dim, " (",
              meaning, "), got shape ", t.sizes());
}

int to_int(const char* op, const char* what, int64_t v) {
  TORCH_CHECK(v >= 0 && v <= std::numeric_limits<int>::max(), op, ": ", what, " ", v, " out of range");
  return static_cast<int>(v);
}

void set_view(View4& view, const at::Tensor& t) {
  view.data = t.data_ptr<float>();
  for (int i = 0; i < 4; ++i) view.stride[i] = t.stride(i);
}

// Checks k, v, the bias table and the grid; fills everything of `p` but the queries and the output.
// `resolution`: (Rh, Rw), the key grid.
Problem key_value_problem(const char* op, const at::Tensor& k, const at::Tensor& v, const at::Tensor& biases,
                          at::IntArrayRef resolution, int64_t stride, double scale, Activation act) {
  check_float_cpu(op, "k", k, 4);
  check_float_cpu(op, "v", v, 4);
  check_float_cpu(op, "attention_biases", biases, 2);
  TORCH_CHECK(resolution.size() == 2, op, ": resolution must be (Rh, Rw), got ", resolution);
  const int64_t rh = resolution[0], rw = resolution[1];
  TORCH_CHECK(rh >= 1 && rh <= 4096 && rw >= 1 && rw <= 4096, op, ": resolution (Rh, Rw) must be in [1, 4096], got ",
              resolution);
  TORCH_CHECK(stride >= 1, op, ": stride must be >= 1, got ", stride);
  const int64_t nk = rh * rw;
  check_size(op, "k", k, 2, nk, "keys = Rh·Rw");
  check_size(op, "v", v, 0, k.size(0), "batch, as k");
  check_size(op, "v", v, 1, k.size(1), "heads, as k");
  check_size(op, "v", v, 2, nk, "keys = Rh·Rw");
  check_size(op, "attention_biases", biases, 0, k.size(1), "heads, as k");
  check_size(op, "attention_biases", biases, 1, nk, "table width = Rh·Rw");
  TORCH_CHECK(k.size(3) > 0 && v.size(3) > 0, op, ": k and v need non-empty head dims, got k ", k.sizes(), ", v ",
              v.sizes());
  Problem p;
  p.batch = to_int(op, "batch", k.size(0));
  p.heads = to_int(op, "heads", k.size(1));
  p.key_dim = to_int(op, "key dim", k.size(3));
  p.value_dim = to_int(op, "value dim", v.size(3));
  p.grid_h = static_cast<int>(rh);
  p.grid_w = static_cast<int>(rw);
  p.stride = static_cast<int>(std::min<int64_t>(stride, std::max(rh, rw)));  // same grid beyond both sides
  p.scale = static_cast<float>(scale);
  p.activation = act;
  set_view(p.k, k);
  set_view(p.v, v);
  p.bias = biases.data_ptr<float>();
  p.bias_stride[0] = biases.stride(0);
  p.bias_stride[1] = biases.stride(1);
  return p;
}

at::Tensor run(Problem& p, const at::TensorOptions& options) {
  at::Tensor out = new_output({p.batch, p.num_queries(), static_cast<int64_t>(p.heads) * p.value_dim}, options);
  p.out = out.data_ptr<float>();
  const Kernels& kernels = kernels_for(active_isa());  // throws, naming the ISA, when this build lacks it
  const Plan plan = make_plan(p, kernels.geometry);
  if (plan.items == 0) return out;
  at::parallel_for(0, plan.items, 1, [&](int64_t begin, int64_t end) {
    kernels.run(p, plan, begin, end, thread_workspace(plan.workspace_floats));
  });
  return out;
}

at::Tensor biased_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& attention_biases, at::IntArrayRef resolution, int64_t stride,
                            double scale, std::optional<std::string_view> activation) {
  const char* op = "levit_kernels::biased_attention";
  Problem p = key_value_problem(op, k, v, attention_biases, resolution, stride, scale,
                                parse_activation(op, activation));
  check_float_cpu(op, "q", q, 4);
  check_size(op, "q", q, 0, p.batch, "batch, as k");
  check_size(op, "q", q, 1, p.heads, "heads, as k");
  check_size(op, "q", q, 2, p.num_queries(), "queries on the stride grid");
  check_size(op, "q", q, 3, p.key_dim, "key dim, as k");
  set_view(p.q, q);
  return run(p, q.options());
}

at::Tensor shrink_attention(const at::Tensor& x, const at::Tensor& q_weight, const at::Tensor& q_bias,
                            const at::Tensor& k, const at::Tensor& v, const at::Tensor& attention_biases,
                            at::IntArrayRef resolution, int64_t stride, double scale,
                            std::optional<std::string_view> activation) {
  const char* op = "levit_kernels::shrink_attention";
  Problem p = key_value_problem(op, k, v, attention_biases, resolution, stride, scale,
                                parse_activation(op, activation));
  check_float_cpu(op, "x", x, 3);
  check_float_cpu(op, "q_weight", q_weight, 2);
  check_float_cpu(op, "q_bias", q_bias, 1);
  const int64_t hd = static_cast<int64_t>(p.heads) * p.key_dim;
  check_size(op, "x", x, 0, p.batch, "batch, as k");
  check_size(op, "x", x, 1, p.num_keys(), "tokens = Rh·Rw");
  check_size(op, "q_weight", q_weight, 0, hd, "heads × key dim of k");
  check_size(op, "q_weight", q_weight, 1, x.size(2), "channels of x");
  check_size(op, "q_bias", q_bias, 0, hd, "heads × key dim of k");
  TORCH_CHECK(x.size(2) > 0, op, ": x needs at least one channel, got shape ", x.sizes());
  p.x = x.data_ptr<float>();
  for (int i = 0; i < 3; ++i) p.x_stride[i] = x.stride(i);
  p.channels = to_int(op, "channels", x.size(2));
  p.q_weight = q_weight.data_ptr<float>();
  p.q_weight_stride[0] = q_weight.stride(0);
  p.q_weight_stride[1] = q_weight.stride(1);
  p.q_bias = q_bias.data_ptr<float>();
  p.q_bias_stride = q_bias.stride(0);
  return run(p, x.options());
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(levit_kernels, m) {
  m.def("biased_attention(Tensor q, Tensor k, Tensor v, Tensor attention_biases, int[2] resolution, int stride, "
        "float scale, str? activation) -> Tensor");
  m.def("shrink_attention(Tensor x, Tensor q_weight, Tensor q_bias, Tensor k, Tensor v, Tensor attention_biases, "
        "int[2] resolution, int stride, float scale, str? activation) -> Tensor");
}

TORCH_LIBRARY_IMPL(levit_kernels, CPU, m) {
  m.impl("biased_attention", &biased_attention);
  m.impl("shrink_attention", &shrink_attention);
}

}  // namespace levit::attention
