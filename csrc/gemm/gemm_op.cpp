// Torch custom ops on CPU: levit_kernels::linear and ::mlp (weights packed through the cache), ::gemm_pack,
// ::linear_packed and ::mlp_packed (weights packed explicitly by the caller). Argument checks, output allocation,
// ISA dispatch and the thread split live here; the arithmetic is in the per-ISA kernels (gemm.h).
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
#include "gemm/gemm.h"
#include "gemm/packed_weights.h"

namespace levit::gemm {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

void check_operand(const char* op, const char* arg, const at::Tensor& t, int64_t dim) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat, op, ": argument '", arg, "' must be float32, got ",
                   t.scalar_type());
  TORCH_CHECK(t.device().is_cpu(), op, ": argument '", arg, "' must be a CPU tensor, got one on ", t.device());
  TORCH_CHECK_VALUE(dim < 0 || t.dim() == dim, op, ": argument '", arg, "' must be ", dim, "-D, got shape ",
                    t.sizes());
}

void check_size(const char* op, const char* arg, const at::Tensor& t, int64_t dim, int64_t expected,
                const char* meaning) {
  TORCH_CHECK_VALUE(t.size(dim) == expected, op, ": argument '", arg, "' must be of size ", expected, " in dim ", dim,
                    " (", meaning, "), got shape ", t.sizes());
}

// (..., cols) as (rows, cols) with unit stride along cols, as the kernels read it; copies only when no such view
// of the data exists (e.g. a transposed x).
at::Tensor as_rows(const at::Tensor& t, int64_t cols) {
  const int64_t rows = c10::multiply_integers(t.sizes().begin(), t.sizes().end() - 1);
  at::Tensor view = t.reshape({rows, cols});
  return view.stride(1) == 1 || cols <= 1 ? view : view.contiguous();
}

std::vector<int64_t> output_sizes(const at::Tensor& x, int64_t cols) {
  std::vector<int64_t> sizes(x.sizes().begin(), x.sizes().end());
  sizes.back() = cols;
  return sizes;
}

// One share of rows × panels per thread (common/thread_split.h: balanced at batch 1's 16-196 rows), each walked in
// row blocks of about 16 register tiles (their x rows stay in L2 while the panels stream past).
void run_linear(const Kernels& kernels, const LinearArgs& args, int64_t m) {
  const Geometry& g = kernels.geometry;
  const ThreadSplit split(m, args.n, g.mr, g.nr, threads_for(m * args.n * args.k));
  split.run([&](const Share& s) {
    for_each_row_block(s.m0, s.m1, 16 * g.mr, g.mr,
                       [&](int64_t m0, int64_t m1) { kernels.linear_block(args, m0, m1, s.n0, s.n1); });
  });
}

void check_x(const char* op, const at::Tensor& x) {
  check_operand(op, "x", x, -1);
  TORCH_CHECK_VALUE(x.dim() >= 1, op, ": argument 'x' must have at least 1 dim (..., C), got shape ", x.sizes());
}

// A weight already in the kernels' layout (gemm_pack): (ceil(n / nr), k, nr), packed under the active ISA.
void check_prepacked(const char* op, const char* arg, const at::Tensor& packed, int64_t n, int64_t k,
                     const char* k_meaning, const Geometry& g) {
  check_operand(op, arg, packed, 3);
  TORCH_CHECK_VALUE(packed.size(2) == g.nr, op, ": argument '", arg, "' was packed for panel width ", packed.size(2),
                    " but the active ISA (", isa_name(active_isa()), ") uses ", g.nr,
                    "; pack the weight again (gemm_pack) under this ISA");
  TORCH_CHECK_VALUE(packed.size(0) == ceil_div(n, g.nr) && packed.size(1) == k, op, ": argument '", arg,
                    "' must be the packed form of a (", n, ", ", k, ") weight (", k_meaning, "), i.e. of shape [",
                    ceil_div(n, g.nr), ", ", k, ", ", g.nr, "], got ", packed.sizes());
  TORCH_CHECK_VALUE(packed.is_contiguous(), op, ": argument '", arg, "' must be contiguous (as gemm_pack returns it)");
}

// Checks bias and residual of a linear with n outputs.
void check_linear_epilogue(const char* op, const at::Tensor& x, int64_t n, const std::optional<at::Tensor>& bias,
                           const std::optional<at::Tensor>& residual) {
  if (bias) {
    check_operand(op, "bias", *bias, 1);
    check_size(op, "bias", *bias, 0, n, "output width");
  }
  if (residual) {
    const auto out_sizes = output_sizes(x, n);
    check_operand(op, "residual", *residual, -1);
    TORCH_CHECK_VALUE(residual->sizes() == at::IntArrayRef(out_sizes), op,
                      ": argument 'residual' must be of the output's shape ", at::IntArrayRef(out_sizes), ", got ",
                      residual->sizes());
  }
}

at::Tensor linear_forward(const Kernels& kernels, const at::Tensor& x, const at::Tensor& packed, int64_t n,
                          const std::optional<at::Tensor>& bias, Activation act,
                          const std::optional<at::Tensor>& residual) {
  const int64_t k = x.size(-1);
  at::Tensor out = new_output(output_sizes(x, n), x.options());
  if (out.numel() == 0) return out;
  const at::Tensor x2 = as_rows(x, k);
  const at::Tensor bias_c = bias ? bias->contiguous() : at::Tensor();
  const at::Tensor res2 = residual ? as_rows(*residual, n) : at::Tensor();
  const LinearArgs args{x2.const_data_ptr<float>(), x2.stride(0), packed.const_data_ptr<float>(),
                        bias ? bias_c.const_data_ptr<float>() : nullptr,
                        residual ? res2.const_data_ptr<float>() : nullptr, residual ? res2.stride(0) : 0,
                        out.mutable_data_ptr<float>(), n, k, n, act};
  run_linear(kernels, args, x2.size(0));
  return out;
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                  std::optional<std::string_view> activation, const std::optional<at::Tensor>& residual) {
  constexpr const char* op = "linear";
  check_x(op, x);
  check_operand(op, "weight", weight, 2);
  check_size(op, "weight", weight, 1, x.size(-1), "channels of x");
  check_linear_epilogue(op, x, weight.size(0), bias, residual);
  const Activation act = parse_activation(op, activation);
  const Kernels& kernels = kernels_for(active_isa());
  const at::Tensor packed = cached_packed_weight(weight, kernels.geometry.nr);
  return linear_forward(kernels, x, packed, weight.size(0), bias, act, residual);
}

at::Tensor linear_packed(const at::Tensor& x, const at::Tensor& packed_weight, int64_t out_features,
                         const std::optional<at::Tensor>& bias, std::optional<std::string_view> activation,
                         const std::optional<at::Tensor>& residual) {
  constexpr const char* op = "linear_packed";
  check_x(op, x);
  TORCH_CHECK_VALUE(out_features >= 0, op, ": argument 'out_features' must be >= 0, got ", out_features);
  check_linear_epilogue(op, x, out_features, bias, residual);
  const Activation act = parse_activation(op, activation);
  const Kernels& kernels = kernels_for(active_isa());
  check_prepacked(op, "packed_weight", packed_weight, out_features, x.size(-1), "channels of x", kernels.geometry);
  return linear_forward(kernels, x, packed_weight, out_features, bias, act, residual);
}

// Checks the biases (which give the hidden and output widths) and the residual of an MLP.
void check_mlp_operands(const char* op, const at::Tensor& x, const at::Tensor& b1, const at::Tensor& b2,
                        bool residual) {
  check_x(op, x);
  check_operand(op, "b1", b1, 1);
  check_operand(op, "b2", b2, 1);
  if (residual) check_size(op, "b2", b2, 0, x.size(-1), "output width = channels of x, for the residual add");
}

at::Tensor mlp_forward(const Kernels& kernels, const at::Tensor& x, const at::Tensor& p1, const at::Tensor& b1,
                       const at::Tensor& p2, const at::Tensor& b2, Activation act, bool residual) {
  const Geometry& g = kernels.geometry;
  const int64_t c = x.size(-1), hidden = b1.size(0), c_out = b2.size(0);
  at::Tensor out = new_output(output_sizes(x, c_out), x.options());
  if (out.numel() == 0) return out;
  const at::Tensor x2 = as_rows(x, c), b1c = b1.contiguous(), b2c = b2.contiguous();
  const MlpArgs args{x2.const_data_ptr<float>(), x2.stride(0), p1.const_data_ptr<float>(),
                     b1c.const_data_ptr<float>(), p2.const_data_ptr<float>(), b2c.const_data_ptr<float>(),
                     out.mutable_data_ptr<float>(), c_out, c, hidden, c_out, act, residual};
  const int64_t m = x2.size(0), tile_rows = mlp_tile_rows(g, hidden);
  // Rows only: a row's hidden activations all feed each of its outputs.
  const ThreadSplit split(m, c_out, g.mr, g.nr, threads_for(m * hidden * (c + c_out)), /*allow_columns=*/false);
  split.run([&](const Share& s) {
    float* scratch = thread_workspace(static_cast<size_t>(std::min(tile_rows, s.m1 - s.m0) * std::max<int64_t>(hidden, 1)));
    for_each_row_block(s.m0, s.m1, tile_rows, g.mr, [&](int64_t m0, int64_t m1) { mlp_block(kernels, args, m0, m1, scratch); });
  });
  return out;
}

at::Tensor mlp(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
               const at::Tensor& b2, std::optional<std::string_view> activation, bool residual) {
  constexpr const char* op = "mlp";
  check_mlp_operands(op, x, b1, b2, residual);
  check_operand(op, "w1", w1, 2);
  check_operand(op, "w2", w2, 2);
  check_size(op, "w1", w1, 0, b1.size(0), "hidden width = b1.shape[0]");
  check_size(op, "w1", w1, 1, x.size(-1), "channels of x");
  check_size(op, "w2", w2, 0, b2.size(0), "output width = b2.shape[0]");
  check_size(op, "w2", w2, 1, b1.size(0), "hidden width = b1.shape[0]");
  const Activation act = parse_activation(op, activation);
  const Kernels& kernels = kernels_for(active_isa());
  const int nr = kernels.geometry.nr;
  return mlp_forward(kernels, x, cached_packed_weight(w1, nr), b1, cached_packed_weight(w2, nr), b2, act, residual);
}

at::Tensor mlp_packed(const at::Tensor& x, const at::Tensor& packed_w1, const at::Tensor& b1,
                      const at::Tensor& packed_w2, const at::Tensor& b2, std::optional<std::string_view> activation,
                      bool residual) {
  constexpr const char* op = "mlp_packed";
  check_mlp_operands(op, x, b1, b2, residual);
  const Activation act = parse_activation(op, activation);
  const Kernels& kernels = kernels_for(active_isa());
  check_prepacked(op, "packed_w1", packed_w1, b1.size(0), x.size(-1), "channels of x", kernels.geometry);
  check_prepacked(op, "packed_w2", packed_w2, b2.size(0), b1.size(0), "hidden width", kernels.geometry);
  return mlp_forward(kernels, x, packed_w1, b1, packed_w2, b2, act, residual);
}

// The packed form linear_packed / mlp_packed take, for the active ISA: (ceil(N / nr), K, nr).
at::Tensor gemm_pack(const at::Tensor& weight) {
  check_operand("gemm_pack", "weight", weight, 2);
  const int nr = kernels_for(active_isa()).geometry.nr;
  return pack_weight_tensor(weight, nr).view({ceil_div(weight.size(0), nr), weight.size(1), nr});
}

int64_t gemm_panel_width() { return kernels_for(active_isa()).geometry.nr; }

int64_t gemm_cache_entries() { return packed_weight_cache_entries(); }
void gemm_cache_clear() { clear_packed_weight_cache(); }

}  // namespace
}  // namespace levit::gemm

TORCH_LIBRARY_FRAGMENT(levit_kernels, m) {
  m.def("linear(Tensor x, Tensor weight, Tensor? bias, str? activation, Tensor? residual) -> Tensor");
  m.def("mlp(Tensor x, Tensor w1, Tensor b1, Tensor w2, Tensor b2, str? activation, bool residual) -> Tensor");
  // Explicitly packed weights (gemm_pack once, e.g. when a model is optimized; no per-call cache lookup).
  m.def("gemm_pack(Tensor weight) -> Tensor");
  m.def("gemm_panel_width() -> int", &levit::gemm::gemm_panel_width);
  m.def("linear_packed(Tensor x, Tensor packed_weight, int out_features, Tensor? bias, str? activation, "
        "Tensor? residual) -> Tensor");
  m.def("mlp_packed(Tensor x, Tensor packed_w1, Tensor b1, Tensor packed_w2, Tensor b2, str? activation, "
        "bool residual) -> Tensor");
  // Introspection of the packed-weight cache (tests).
  m.def("gemm_cache_entries() -> int", &levit::gemm::gemm_cache_entries);
  m.def("gemm_cache_clear() -> ()", &levit::gemm::gemm_cache_clear);
}

TORCH_LIBRARY_IMPL(levit_kernels, CPU, m) {
  m.impl("linear", &levit::gemm::linear);
  m.impl("mlp", &levit::gemm::mlp);
  m.impl("gemm_pack", &levit::gemm::gemm_pack);
  m.impl("linear_packed", &levit::gemm::linear_packed);
  m.impl("mlp_packed", &levit::gemm::mlp_packed);
}
