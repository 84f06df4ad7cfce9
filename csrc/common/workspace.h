// Per-thread scratch memory of the CPU kernels, kept between calls (at::parallel_for's threads persist) and grown
// on demand. One buffer per thread serves every op: a thread runs one kernel's work item at a time.
#pragma once
#include <c10/util/Exception.h>

#include <cstdlib>
#include <memory>

namespace levit {

// `floats` floats, 64-byte aligned, private to the calling thread; valid until its next call.
inline float* thread_workspace(size_t floats) {
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  thread_local std::unique_ptr<float, Free> buffer;
  thread_local size_t capacity = 0;
  if (floats > capacity) {
    const size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
    buffer.reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
    TORCH_CHECK(buffer != nullptr, "levit_kernels: cannot allocate a ", bytes, "-byte workspace");
    capacity = floats;
  }
  return buffer.get();
}

}  // namespace levit
