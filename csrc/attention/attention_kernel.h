// Torch-free interface of the attention kernels (biased_attention and shrink_attention): the problem as raw
// pointers and element strides, the ISA-independent work plan, and one entry point per ISA variant.
//
// Per-ISA translation units include this header *before* their `#pragma GCC target`, so nothing declared here is
// compiled for an AVX target.
#pragma once
#include <cstddef>
#include <cstdint>

#include "common/activation.h"
#include "common/isa_select.h"

namespace levit::attention {

// A strided (B, H, N, C) fp32 view, strides in elements. Read in place: views into a packed qkv tensor work.
struct View4 {
  const float* data = nullptr;
  int64_t stride[4] = {0, 0, 0, 0};
  const float* row(int64_t b, int64_t h, int64_t n) const {
    return data + b * stride[0] + h * stride[1] + n * stride[2];
  }
};

// out = act(softmax(scale·q·kᵀ + bias[h, idx]) · v) as (B, Nq, H·Dv), keys on the Rh×Rw grid (row-major), queries
// on its stride-s subgrid (ceil(Rh/s) × ceil(Rw/s)), idx = |yq·s − yk|·Rw + |xq·s − xk|.
// biased_attention reads q; shrink_attention (x != nullptr) computes q = x[:, tokens of the stride-s grid] ·
// q_weightᵀ + q_bias in the kernel instead.
struct Problem {
  int batch = 0, heads = 0;
  int key_dim = 0;      // D
  int value_dim = 0;    // Dv
  int grid_h = 0;       // Rh: keys on the Rh×Rw grid
  int grid_w = 0;       // Rw
  int stride = 1;       // s: queries on every s-th point of it, in both directions
  float scale = 1.0f;
  Activation activation = Activation::kNone;
  View4 q, k, v;        // (B, H, Nq, D), (B, H, Nk, D), (B, H, Nk, Dv)
  const float* bias = nullptr;  // (H, Rh·Rw)
  int64_t bias_stride[2] = {0, 0};
  float* out = nullptr;         // (B, Nq, H·Dv), contiguous
  // shrink_attention only
  const float* x = nullptr;     // (B, Rh·Rw, C)
  int64_t x_stride[3] = {0, 0, 0};
  int channels = 0;             // C
  const float* q_weight = nullptr;  // (H·D, C)
  int64_t q_weight_stride[2] = {0, 0};
  const float* q_bias = nullptr;    // (H·D,)
  int64_t q_bias_stride = 0;

  bool shrink() const { return x != nullptr; }
  int query_h() const { return (grid_h - 1) / stride + 1; }
  int query_w() const { return (grid_w - 1) / stride + 1; }
  int num_queries() const { return query_h() * query_w(); }
  int num_keys() const { return grid_h * grid_w; }
};

// Widest vector any variant uses: paddings below are multiples of it, so one plan (and one workspace layout)
// serves every ISA.
constexpr int kMaxWidth = 16;
// Most queries per work item (bounds the kernels' row-pointer arrays).
constexpr int kMaxTileRows = 48;

// Work items are (batch, head, query tile), batch-major: a thread's contiguous range of items reuses, tile after
// tile, the (batch, head) keys and values it packed, and its batch's rows of x and qkv stay in cache across heads.
struct Plan {
  int tile_rows = 0;         // queries per item
  int tiles = 0;             // items per (batch, head)
  int64_t items = 0;
  int keys_padded = 0;       // Nk rounded up to kMaxWidth (rows of packed kᵀ)
  int key_dim_padded = 0;    // D rounded up
  int value_dim_padded = 0;  // Dv rounded up
  int score_ld = 0;          // row length of the score tile
  int bias_ld = 0;           // row length of the mirrored bias table
  // Offsets (in floats) of each buffer in a thread's workspace, and its size.
  size_t kt = 0, v = 0, bias = 0, scores = 0, q = 0, wq = 0, bq = 0, row_scale = 0, row_max = 0;
  size_t workspace_floats = 0;
};

// Register tile of an ISA's products (q·kᵀ, p·v, the shrink's query projection): rows × vecs vectors of
// accumulators. The plan makes query tiles a multiple of `rows`.
struct Geometry {
  int rows;
  int vecs;
};

Plan make_plan(const Problem& p, const Geometry& tile);

// Runs items [begin, end) of a plan made for the variant's geometry. `workspace`: plan.workspace_floats floats,
// 64-byte aligned, private to the caller's thread. Every variant computes the same thing; the scalar one is the
// reference for the others.
using RunFn = void (*)(const Problem&, const Plan&, int64_t begin, int64_t end, float* workspace);

struct Kernels {
  Geometry geometry;
  RunFn run;
};

// Per-ISA tables, each defined in its own translation unit compiled for that ISA (constant data: no code runs
// until a kernel of a supported ISA is called).
extern const Kernels kScalarKernels;
#if defined(__x86_64__) || defined(_M_X64)
extern const Kernels kAvx2Kernels;
extern const Kernels kAvx512Kernels;
#endif
#if defined(__aarch64__)
extern const Kernels kNeonKernels;
#endif

// The kernel table of `isa`; throws std::invalid_argument when this build has none (x86 ones on x86-64 only, NEON
// on AArch64 only).
inline const Kernels& kernels_for(Isa isa) {
  return *select_variant<const Kernels*>(isa, "attention", &kScalarKernels, LEVIT_IF_X86(&kAvx2Kernels),
                                         LEVIT_IF_X86(&kAvx512Kernels), LEVIT_IF_AARCH64(&kNeonKernels));
}

}  // namespace levit::attention
