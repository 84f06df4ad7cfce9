// Output allocation for the torch-facing op wrappers. With poisoning on (tests), outputs start as NaN so any
// element a kernel fails to write is caught by the comparison with the reference.
#pragma once
#include <ATen/ATen.h>

#include <atomic>

namespace levit {

inline std::atomic<bool>& poison_outputs_flag() {
  static std::atomic<bool> flag{false};
  return flag;
}

inline at::Tensor new_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor out = at::empty(sizes, options);
  if (poison_outputs_flag().load(std::memory_order_relaxed)) out.fill_(std::numeric_limits<double>::quiet_NaN());
  return out;
}

}  // namespace levit
