// Torch custom op levit_kernels::pool_mixer on CPU: validate, allocate the output, pick the ISA variant, and run the
// work items (image × band of rows) in parallel (at::parallel_for, so torch.set_num_threads applies). The fake
// (meta) implementation lives in levit_kernels/backends/cpu/norm_pool.py.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <memory>

#include "common/isa.h"
#include "common/output.h"
#include "pool/pool_kernel.h"

namespace levit::pool {
namespace {

constexpr const char* kOp = "pool_mixer";

void check_float_cpu(const char* arg, const at::Tensor& t, int64_t dim, const char* shape) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat, kOp, ": argument '", arg, "' must be float32, got ",
                   t.scalar_type());
  TORCH_CHECK_VALUE(t.device().is_cpu(), kOp, ": argument '", arg, "' must be a CPU tensor, got one on ", t.device());
  TORCH_CHECK_VALUE(t.dim() == dim, kOp, ": argument '", arg, "' must be a ", dim, "-D tensor ", shape,
                    ", got shape ", t.sizes());
}

at::Tensor pool_mixer(const at::Tensor& x, const at::Tensor& layer_scale, int64_t pool_size) {
  check_float_cpu("x", x, 4, "(B, H, W, C)");
  check_float_cpu("layer_scale", layer_scale, 1, "(C,)");
  TORCH_CHECK_VALUE(layer_scale.size(0) == x.size(3), kOp, ": argument 'layer_scale' must be of size ", x.size(3),
                    " in dim 0 (channels of x), got shape ", layer_scale.sizes());
  TORCH_CHECK_VALUE(pool_size >= 1 && pool_size % 2 == 1 && pool_size <= 2 * kMaxRadius + 1, kOp,
                    ": argument 'pool_size' must be an odd int in [1, ", 2 * kMaxRadius + 1, "], got ", pool_size);
  at::Tensor out = new_output(x.sizes(), x.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  const at::Tensor xs = x.stride(3) == 1 || x.size(3) == 1 ? x : x.contiguous();
  const at::Tensor ls = layer_scale.contiguous();
  Problem p;
  p.batch = x.size(0), p.height = x.size(1), p.width = x.size(2), p.channels = x.size(3);
  p.radius = static_cast<int>(pool_size / 2);
  p.x = xs.const_data_ptr<float>();
  for (int d = 0; d < 3; ++d) p.x_stride[d] = xs.stride(d);
  p.layer_scale = ls.const_data_ptr<float>();
  p.out = out.mutable_data_ptr<float>();
  // Two items per thread where the rows allow: a batch-1 map is split into bands of rows.
  const Plan plan = make_plan(p, 2 * at::get_num_threads());
  const RunFn run = kernel_for(active_isa());
  at::parallel_for(0, plan.items, 1, [&](int64_t begin, int64_t end) {
    const std::unique_ptr<float[]> scratch(new float[plan.scratch_floats]);
    run(p, plan, begin, end, scratch.get());
  });
  return out;
}

}  // namespace
}  // namespace levit::pool

TORCH_LIBRARY_FRAGMENT(levit_kernels, m) {
  m.def("pool_mixer(Tensor x, Tensor layer_scale, int pool_size) -> Tensor");
}

TORCH_LIBRARY_IMPL(levit_kernels, CPU, m) { m.impl("pool_mixer", &levit::pool::pool_mixer); }
