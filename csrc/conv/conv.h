// Convolution over channels-last maps as an implicit GEMM on the GEMM micro-kernels (csrc/gemm): the stem's and
// the downsampling layers' convolutions (LeViT: four 3×3 stride-2; EfficientFormer: two 3×3 stride-2 + one between
// stages). Torch-free interface between the op wrapper (conv_op.cpp) and the standalone test (csrc/tests).
//
// out[b, oy, ox, co] = act(bias[co] + Σ_{ky, kx, ci} x[b, oy·sh − ph + ky, ox·sw − pw + kx, ci] · w[co, ci, ky, kx])
// (zero outside the map). Output pixels are GEMM rows (M = B·Ho·Wo), the patch is K = kh·kw·Cin ordered
// (ky, kx, ci), so a patch row of an NHWC map is kh runs of kw·Cin contiguous floats. Two paths, chosen per layer
// (conv_block): a tile of output pixels has its patch rows gathered into the thread's scratch (never a whole im2col
// buffer) and multiplied against the packed (K, Cout) weight by the ISA's linear_block, bias and activation fused in
// its epilogue; or, for narrow patches (the stem's first layer, C_in = 3), the ISA's direct kernel (conv_kernel.h)
// reads each pixel's taps straight from the map through its strides into the same kind of register tile.
#pragma once
#include <cstdint>

#include "common/activation.h"
#include "gemm/gemm.h"

namespace levit::conv {

struct ConvArgs {
  const float* x;  // x[b, h, w, c] = x[b·sb + h·sh + w·sw + c·sc]: any strides (an NCHW tensor viewed as NHWC too)
  int64_t sb, sh, sw, sc;
  int64_t batch, h, w, cin;
  int64_t kh, kw;
  int64_t stride_h, stride_w;
  int64_t pad_h, pad_w;
  int64_t ho, wo;         // output_side() of (h, kh, stride_h, pad_h) and of (w, kw, stride_w, pad_w)
  const float* packed;    // gemm::pack_weight of W (Cout, K), W[co, (ky·kw + kx)·cin + ci] = w[co, ci, ky, kx]
  const float* bias;      // (Cout,) or null
  float* out;             // (B·Ho·Wo, Cout) rows, contiguous: the NHWC output map
  int64_t cout;
  Activation act;
};

// Output side of a convolution: (in + 2·pad − kernel) / stride + 1, or 0 when the padded input is shorter than
// the kernel.
int64_t output_side(int64_t in, int64_t kernel, int64_t stride, int64_t pad);

inline int64_t patch_width(const ConvArgs& a) { return a.kh * a.kw * a.cin; }

// Output pixels per tile: a multiple of mr whose gathered patch rows (rows × K floats) stay in L2 beside the
// weight panel being streamed.
int64_t conv_tile_rows(const gemm::Geometry& g, int64_t k);

// The patch rows of output pixels [m0, m1) into rows ((m1 − m0) × patch_width floats, row-major).
void gather_patches(const ConvArgs& a, int64_t m0, int64_t m1, float* rows);

// Output pixels [m0, m1) × output channels [n0, n1) (n0 a multiple of nr) by the gather + GEMM; `scratch` holds
// (m1 − m0) × patch_width floats.
void gather_gemm_block(const gemm::Kernels& kernels, const ConvArgs& a, int64_t m0, int64_t m1, int64_t n0,
                       int64_t n1, float* scratch);

// The same block by the direct kernel of one ISA (conv_kernel.h: no gather, the micro-kernel reads the map through
// its strides); nr is the panel width a.packed was packed for.
using DirectFn = void (*)(const ConvArgs& a, int64_t nr, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
void direct_block_scalar(const ConvArgs& a, int64_t nr, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
#if defined(__x86_64__) || defined(_M_X64)
void direct_block_avx2(const ConvArgs& a, int64_t nr, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
void direct_block_avx512(const ConvArgs& a, int64_t nr, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
#endif
#if defined(__aarch64__)
void direct_block_neon(const ConvArgs& a, int64_t nr, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
#endif

// One ISA's convolution kernels: its GEMM table (the gather + GEMM path, and the panel width weights are packed
// for) and its direct block. Chosen by ISA like every other kernel table (common/isa_select.h).
struct Kernels {
  const gemm::Kernels* gemm;
  DirectFn direct;
};

// The table of `isa`; throws std::invalid_argument when this build has none.
const Kernels& kernels_for(Isa isa);

// Output pixels [m0, m1) × output channels [n0, n1) (n0 a multiple of nr) by whichever of the two paths is faster
// for this layer (see conv_block.cpp); `scratch` holds (m1 − m0) × patch_width floats.
void conv_block(const Kernels& kernels, const ConvArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
                float* scratch);

}  // namespace levit::conv
