// Fused fp32 GEMM for linear and mlp: torch-free interface between the op wrapper (gemm_op.cpp), the per-ISA
// kernels (gemm_<isa>.cpp) and the standalone test program (csrc/tests).
//
// out[m, n] = residual[m, n] + act(x[m, :] · W[n, :] + bias[n])
//
// W (N, K) is packed once (pack_weight) into panels of NR output columns: panel p holds, for every k, the NR values
// W[p·NR + j, k], so the micro-kernel reads one contiguous run of NR floats per k. The last panel is zero-padded.
#pragma once
#include <cstdint>

#include "common/activation.h"
#include "common/isa.h"

namespace levit::gemm {

// Register tile of an ISA's micro-kernel (mr rows × nr columns of accumulators) and its largest K block. Partial
// sums leave the registers once per K block, so blocks are long: on Zen 3 streaming the weight panel from L2 keeps
// up with the FMAs, and splitting K at 256 (to hold a panel slice in L1) measured 0-15% slower (K = 384, 768); on
// AMD EPYC Zen 4 (avx512, 6 × 64 tile, 32 KiB L1) K blocks of 256 / 128 / 64 measured 3 / 7 / 12% slower over the
// LeViT-256 projections (see gemm_avx512.cpp).
struct Geometry {
  int mr;
  int nr;
  int kc;
};

// Floats in the packed form of an (n, k) weight for panel width nr.
int64_t packed_floats(int64_t n, int64_t k, int nr);
// W[i, j] is w[i·stride_n + j·stride_k]; writes packed_floats(n, k, nr) floats.
void pack_weight(const float* w, int64_t stride_n, int64_t stride_k, int64_t n, int64_t k, int nr, float* packed);

struct LinearArgs {
  const float* x;         // (M, K) rows, unit stride along K
  int64_t ldx;
  const float* packed;    // pack_weight() of W (N, K) for this ISA's nr
  const float* bias;      // (N,) or null
  const float* residual;  // (M, N) rows, unit stride along N, or null
  int64_t ldr;
  float* out;             // (M, N) rows, unit stride along N
  int64_t ldo;
  int64_t k;
  int64_t n;
  Activation act;
};

struct Kernels {
  Geometry geometry;
  // Computes out rows [m0, m1) × columns [n0, n1); n0 is a multiple of nr.
  void (*linear_block)(const LinearArgs& args, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
  // FMA-bound loop of `iterations` × fma_chain_flops floating-point operations (for fma_peak_gflops).
  float (*fma_chains)(int64_t iterations);
  int fma_chain_flops;
};

// The kernel table of `isa`; throws std::invalid_argument when this build has none (x86 variants on x86-64 only,
// NEON on AArch64 only).
const Kernels& kernels_for(Isa isa);

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

struct MlpArgs {
  const float* x;  // (M, C) rows, unit stride along C
  int64_t ldx;
  const float* packed1;  // W1 (hidden, C) packed
  const float* b1;       // (hidden,)
  const float* packed2;  // W2 (C_out, hidden) packed
  const float* b2;       // (C_out,)
  float* out;            // (M, C_out) rows, unit stride
  int64_t ldo;
  int64_t c;
  int64_t hidden;
  int64_t c_out;
  Activation act;
  bool residual;  // out += x (C_out == C)
};

// Token rows per MLP tile: the tile's hidden activation (rows × hidden) is sized to stay in L2.
int64_t mlp_tile_rows(const Geometry& g, int64_t hidden);
// MLP on rows [m0, m1): hidden = act(x·W1ᵀ + b1) into `scratch` ((m1 - m0) × hidden floats), then
// out = [x +] hidden·W2ᵀ + b2. The full (M × hidden) activation never exists.
void mlp_block(const Kernels& kernels, const MlpArgs& args, int64_t m0, int64_t m1, float* scratch);

// This ISA's fp32 FMA peak in GFLOP/s: the FMA-bound loop on `threads` threads at once, each timed by its own
// CPU time (time spent descheduled by other processes does not count), best of several samples, summed.
double fma_peak_gflops(const Kernels& kernels, int threads);

}  // namespace levit::gemm
