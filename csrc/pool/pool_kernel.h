// Torch-free interface of the pooling-mixer kernel (EfficientFormer's Meta4D token mixer) on a channels-last map:
// the problem as raw pointers and element strides, and one entry point per ISA variant. Shared by the op wrapper
// (pool_op.cpp) and the standalone test (csrc/tests).
//
//   out[b, h, w, c] = x + ls[c] · (avg(b, h, w, c) − x),   avg = mean of x over the P×P window centred on (h, w)
//                                                            clipped to the map (count_include_pad=False)
//
// Per-ISA translation units include this header *before* their `#pragma GCC target`, so nothing declared here is
// compiled for an AVX target.
#pragma once
#include <algorithm>
#include <cstdint>

#include "common/isa_select.h"

namespace levit::pool {

// Largest window radius the kernel takes (pool_size ≤ 129): its per-row table of window rows lives on the stack.
constexpr int kMaxRadius = 64;

struct Problem {
  int64_t batch = 0, height = 0, width = 0, channels = 0;
  int radius = 1;                    // P / 2 (P = pool_size, odd), at most kMaxRadius
  const float* x = nullptr;          // (B, H, W, C), unit stride along C
  int64_t x_stride[3] = {0, 0, 0};   // of dims B, H, W, in floats
  const float* layer_scale = nullptr;  // (C,) contiguous
  float* out = nullptr;              // (B, H, W, C) contiguous
};

// Work items are (image, band of output rows), image-major; a band's first rows re-derive the row sums of the
// `radius` input rows above it (its halo).
struct Plan {
  int64_t band_rows = 0;
  int64_t bands = 0;  // per image
  int64_t items = 0;
  // Floats of a work item's scratch: the row sums of the P input rows its current output row needs.
  int64_t scratch_floats = 0;
};

// Bands sized so that (where the map has the rows) there are at least `min_items` work items.
inline Plan make_plan(const Problem& p, int64_t min_items) {
  Plan plan;
  const int64_t wanted = std::max<int64_t>(1, (min_items + p.batch - 1) / std::max<int64_t>(p.batch, 1));
  const int64_t bands = std::min<int64_t>(std::max<int64_t>(p.height, 1), wanted);
  plan.band_rows = (std::max<int64_t>(p.height, 1) + bands - 1) / bands;
  plan.bands = (std::max<int64_t>(p.height, 1) + plan.band_rows - 1) / plan.band_rows;
  plan.items = p.batch * plan.bands;
  plan.scratch_floats = (2 * p.radius + 1) * p.width * p.channels;
  return plan;
}

// Runs items [begin, end) of `plan`; `scratch` holds plan.scratch_floats floats private to the caller's thread.
using RunFn = void (*)(const Problem& p, const Plan& plan, int64_t begin, int64_t end, float* scratch);
void run_scalar(const Problem& p, const Plan& plan, int64_t begin, int64_t end, float* scratch);
#if defined(__x86_64__) || defined(_M_X64)
void run_avx2(const Problem& p, const Plan& plan, int64_t begin, int64_t end, float* scratch);
void run_avx512(const Problem& p, const Plan& plan, int64_t begin, int64_t end, float* scratch);
#endif
#if defined(__aarch64__)
void run_neon(const Problem& p, const Plan& plan, int64_t begin, int64_t end, float* scratch);
#endif

// The variant of `isa`; throws std::invalid_argument when this build has none (x86 ones on x86-64 only, NEON on
// AArch64 only).
inline RunFn kernel_for(Isa isa) {
  return select_variant<RunFn>(isa, "pool_mixer", run_scalar, LEVIT_IF_X86(run_avx2), LEVIT_IF_X86(run_avx512),
                               LEVIT_IF_AARCH64(run_neon));
}

}  // namespace levit::pool
