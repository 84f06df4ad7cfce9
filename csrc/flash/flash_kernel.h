// Torch-free interface of the flash attention kernel (levit_kernels.attention): softmax attention over any number
// of keys with an online softmax, the problem as raw pointers and element strides, the ISA-independent work plan,
// and one entry point per ISA variant.
//
// Per-ISA translation units include this header *before* their `#pragma GCC target`, so nothing declared here is
// compiled for an AVX target.
#pragma once
#include <cstddef>
#include <cstdint>

#include "attention/attention_kernel.h"
#include "common/activation.h"
#include "common/isa_select.h"

namespace levit::flash {

using attention::View4;

// out = act(softmax(scale·q·kᵀ + bias) · v) as (B, Nq, H·Dv).
struct Problem {
  int batch = 0, heads = 0;
  int num_queries = 0;  // Nq
  int num_keys = 0;     // Nk
  int key_dim = 0;      // D
  int value_dim = 0;    // Dv
  float scale = 1.0f;
  Activation activation = Activation::kNone;
  View4 q, k, v;        // (B, H, Nq, D), (B, H, Nk, D), (B, H, Nk, Dv)
  // Dense additive bias broadcast to (B, H, Nq, Nk): element strides, 0 along broadcast dims; nullptr: none.
  const float* bias = nullptr;
  int64_t bias_stride[4] = {0, 0, 0, 0};
  float* out = nullptr;  // (B, Nq, H·Dv), contiguous
};

// Rows of the register tile of both multiplies, and so of the panels k and v are packed into: key blocks start
// at multiples of it.
constexpr int kPanelRows = 6;

// Work items are (batch, head, query tile), batch-major. An item keeps its tile's queries (transposed, scaled),
// the output accumulator and one block of scores in the thread's workspace, and streams keys and values block by
// block from panels packed into the workspace when its thread reaches a new (batch, head) pair (Nk·(D + Dv)
// floats: the items of a pair are adjacent, so a thread packs each of its pairs once).
struct Plan {
  int tile_rows = 0;      // queries per item
  int tiles = 0;          // items per (batch, head)
  int64_t items = 0;
  int key_block = 0;      // keys per block of the online softmax
  int rows_padded = 0;    // tile_rows rounded up to attention::kMaxWidth: row length of every buffer below
  // Offsets (in floats) of each buffer in a thread's workspace, and its size.
  size_t qt = 0, ot = 0, scores = 0, bias = 0, row_max = 0, block_max = 0, row_sum = 0, rescale = 0;
  size_t key_panels = 0, value_panels = 0;
  size_t workspace_floats = 0;
};

// `threads`: how many threads will share the items (tiles shrink when (batch, head) pairs are too few to keep
// them busy).
Plan make_plan(const Problem& p, int threads);

// Runs items [begin, end) of `plan`. `workspace`: plan.workspace_floats floats, 64-byte aligned, private to the
// caller's thread. Every variant computes the same thing; the scalar one is the reference for the others.
using RunFn = void (*)(const Problem&, const Plan&, int64_t begin, int64_t end, float* workspace);
void run_scalar(const Problem& p, const Plan& plan, int64_t begin, int64_t end, float* workspace);
#if defined(__x86_64__) || defined(_M_X64)
void run_avx2(const Problem& p, const Plan& plan, int64_t begin, int64_t end, float* workspace);
void run_avx512(const Problem& p, const Plan& plan, int64_t begin, int64_t end, float* workspace);
#endif
#if defined(__aarch64__)
void run_neon(const Problem& p, const Plan& plan, int64_t begin, int64_t end, float* workspace);
#endif

// The variant of `isa`; throws std::invalid_argument when this build has none (x86 ones on x86-64 only, NEON on
// AArch64 only).
inline RunFn kernel_for(Isa isa) {
  return select_variant<RunFn>(isa, "attention", run_scalar, LEVIT_IF_X86(run_avx2), LEVIT_IF_X86(run_avx512),
                               LEVIT_IF_AARCH64(run_neon));
}

}  // namespace levit::flash
