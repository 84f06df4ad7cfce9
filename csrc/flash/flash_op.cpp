// Torch custom op levit_kernels::attention on CPU: validate, allocate the output, pick the ISA variant, and run the
// flash kernel's work items in parallel (at::parallel_for, so torch.set_num_threads applies). The fake (meta)
// implementation lives in levit_kernels/backends/cpu/attention.py.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <limits>
#include <optional>
#include <string_view>

#include "common/activation_arg.h"
#include "common/isa.h"
#include "common/output.h"
#include "common/workspace.h"
#include "flash/flash_kernel.h"

namespace levit::flash {
namespace {

constexpr const char* kOp = "levit_kernels::attention";

void check_operand(const char* name, const at::Tensor& t) {
  TORCH_CHECK(t.device().is_cpu(), kOp, ": argument '", name, "' must be a CPU tensor, got one on ", t.device());
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat, kOp, ": argument '", name, "' must be float32, got ",
                   t.scalar_type());
  TORCH_CHECK_VALUE(t.dim() == 4, kOp, ": argument '", name, "' must be 4-D, got shape ", t.sizes());
}

void check_size(const char* name, const at::Tensor& t, int64_t dim, int64_t expected, const char* meaning) {
  TORCH_CHECK_VALUE(t.size(dim) == expected, kOp, ": argument '", name, "' must have size ", expected, " in dim ",
                    dim, " (", meaning, "), got shape ", t.sizes());
}

int to_int(const char* what, int64_t v) {
  TORCH_CHECK_VALUE(v >= 0 && v <= std::numeric_limits<int>::max(), kOp, ": ", what, " ", v, " out of range");
  return static_cast<int>(v);
}

void set_view(View4& view, const at::Tensor& t) {
  view.data = t.data_ptr<float>();
  for (int i = 0; i < 4; ++i) view.stride[i] = t.stride(i);
}

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                     const std::optional<at::Tensor>& bias, std::optional<std::string_view> activation) {
  check_operand("q", q);
  check_operand("k", k);
  check_operand("v", v);
  check_size("k", k, 0, q.size(0), "batch, as q");
  check_size("k", k, 1, q.size(1), "heads, as q");
  check_size("k", k, 3, q.size(3), "key dim, as q");
  check_size("v", v, 0, q.size(0), "batch, as q");
  check_size("v", v, 1, q.size(1), "heads, as q");
  check_size("v", v, 2, k.size(2), "keys, as k");
  TORCH_CHECK_VALUE(q.size(3) > 0 && v.size(3) > 0 && k.size(2) > 0, kOp,
                    ": q, k and v need non-empty head dims and at least one key, got q ", q.sizes(), ", k ",
                    k.sizes(), ", v ", v.sizes());
  Problem p;
  p.batch = to_int("batch", q.size(0));
  p.heads = to_int("heads", q.size(1));
  p.num_queries = to_int("queries", q.size(2));
  p.num_keys = to_int("keys", k.size(2));
  p.key_dim = to_int("key dim", q.size(3));
  p.value_dim = to_int("value dim", v.size(3));
  p.scale = static_cast<float>(scale);
  p.activation = parse_activation(kOp, activation);
  set_view(p.q, q);
  set_view(p.k, k);
  set_view(p.v, v);
  if (bias.has_value()) {
    const at::Tensor& t = *bias;
    TORCH_CHECK(t.device().is_cpu(), kOp, ": argument 'bias' must be a CPU tensor, got one on ", t.device());
    TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat, kOp, ": argument 'bias' must be float32, got ", t.scalar_type());
    const int64_t full[4] = {q.size(0), q.size(1), q.size(2), k.size(2)};
    TORCH_CHECK_VALUE(t.dim() <= 4, kOp, ": argument 'bias' must broadcast to (B, H, Nq, Nk) = ", at::IntArrayRef(full),
                      ", got shape ", t.sizes());
    // Broadcast by strides: a missing leading dim or a size-1 dim reads the same element along it.
    const int64_t lead = 4 - t.dim();
    for (int i = 0; i < 4; ++i) {
      const int64_t size = i < lead ? 1 : t.size(i - lead);
      TORCH_CHECK_VALUE(size == full[i] || size == 1, kOp, ": argument 'bias' must broadcast to (B, H, Nq, Nk) = ",
                        at::IntArrayRef(full), ", got shape ", t.sizes());
      p.bias_stride[i] = (i < lead || size == 1) ? 0 : t.stride(i - lead);
    }
    p.bias = t.data_ptr<float>();
  }

  at::Tensor out = new_output({p.batch, p.num_queries, static_cast<int64_t>(p.heads) * p.value_dim}, q.options());
  p.out = out.data_ptr<float>();
  const Plan plan = make_plan(p, at::get_num_threads());
  if (plan.items == 0) return out;
  const RunFn kernel = kernel_for(active_isa());
  at::parallel_for(0, plan.items, 1, [&](int64_t begin, int64_t end) {
    kernel(p, plan, begin, end, thread_workspace(plan.workspace_floats));
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(levit_kernels, m) {
  m.def("attention(Tensor q, Tensor k, Tensor v, float scale, Tensor? bias, str? activation) -> Tensor");
}

TORCH_LIBRARY_IMPL(levit_kernels, CPU, m) { m.impl("attention", &attention); }

}  // namespace levit::flash
