// Packed weights for the GEMM kernels, cached against the weight tensor so a weight is packed once, not per call.
#pragma once
#include <ATen/core/Tensor.h>

namespace levit::gemm {

// pack_weight() of `weight` (N, K; float32, any strides) for panel width `nr`, as a 1-D float tensor.
at::Tensor pack_weight_tensor(const at::Tensor& weight, int nr);

// The same, from a process-wide cache. An entry is keyed by the weight's TensorImpl (identity) and panel width and
// is valid while the weight's data pointer, sizes, strides and version counter are unchanged, so an in-place
// update (which bumps the version) repacks on the next call. Inference tensors have no version counter: they are
// packed per call (use the explicit pack op for them). Thread-safe; concurrent first users pack once.
at::Tensor cached_packed_weight(const at::Tensor& weight, int nr);

// Entries whose weight is still alive (dead weights' entries are dropped first).
int64_t packed_weight_cache_entries();
void clear_packed_weight_cache();

}  // namespace levit::gemm
