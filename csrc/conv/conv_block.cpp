// ISA-independent half of the implicit-GEMM convolution: the patch gather (copies and zero fill, compiled for the
// baseline instruction set), the gather + GEMM tile driver (the FMAs run in the ISA's GEMM kernel table) and the
// choice between it and the ISA's direct kernel (conv_kernel.h) per layer.
#include "conv/conv.h"

#include <algorithm>
#include <cstring>

#include "common/isa_select.h"


namespace levit::conv {

int64_t output_side(int64_t in, int64_t kernel, int64_t stride, int64_t pad) {
  const int64_t span = in + 2 * pad - kernel;
  return span < 0 ? 0 : span / stride + 1;
}

int64_t conv_tile_rows(const gemm::Geometry& g, int64_t k) {
  constexpr int64_t kPatchTileFloats = 32 * 1024;  // 128 KiB of patch rows: a quarter of Zen 3's L2
  const int64_t rows = kPatchTileFloats / std::max<int64_t>(k, 1) / g.mr * g.mr;
  return std::clamp<int64_t>(rows, g.mr, 16 * g.mr);
}

namespace {

// n floats, in 8-float chunks of constant size (inlined as vector moves, no library call: the stem's first layer
// copies runs of 9 floats, where a memcpy call per run cost more than the GEMM), then the tail one by one.
inline void copy_floats(float* dst, const float* src, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) std::memcpy(dst + i, src + i, 8 * sizeof(float));
  for (; i < n; ++i) dst[i] = src[i];
}

// The kw·cin floats of one kernel row of the patch: input pixels ix0, ix0 + 1, ... of input row `src` (already
// offset to the image and row), zero outside [0, w).
void gather_kernel_row(const ConvArgs& a, const float* src, int64_t ix0, float* dst) {
  const int64_t cin = a.cin;
  const int64_t kx0 = std::clamp<int64_t>(-ix0, 0, a.kw), kx1 = std::clamp<int64_t>(a.w - ix0, kx0, a.kw);
  std::fill(dst, dst + kx0 * cin, 0.0f);
  std::fill(dst + kx1 * cin, dst + a.kw * cin, 0.0f);
  if (a.sc == 1 && a.sw == cin) {  // NHWC rows: the in-map pixels of this kernel row are one contiguous run
    copy_floats(dst + kx0 * cin, src + (ix0 + kx0) * cin, (kx1 - kx0) * cin);
  } else if (a.sc == 1) {
    for (int64_t kx = kx0; kx < kx1; ++kx) copy_floats(dst + kx * cin, src + (ix0 + kx) * a.sw, cin);
  } else {  // channels strided (an NCHW map): element by element
    for (int64_t kx = kx0; kx < kx1; ++kx) {
      const float* p = src + (ix0 + kx) * a.sw;
      for (int64_t c = 0; c < cin; ++c) dst[kx * cin + c] = p[c * a.sc];
    }
  }
}

}  // namespace

void gather_patches(const ConvArgs& a, int64_t m0, int64_t m1, float* rows) {
  const int64_t k = patch_width(a), row_floats = a.kw * a.cin;
  const bool nhwc = a.sc == 1 && a.sw == a.cin;  // a kernel row of the patch is one run of the map's row
  int64_t b = m0 / (a.ho * a.wo), oy = m0 / a.wo % a.ho, ox = m0 % a.wo;
  for (int64_t m = m0; m < m1; ++m, rows += k) {
    const float* image = a.x + b * a.sb;
    const int64_t iy0 = oy * a.stride_h - a.pad_h, ix0 = ox * a.stride_w - a.pad_w;
    if (nhwc && iy0 >= 0 && iy0 + a.kh <= a.h && ix0 >= 0 && ix0 + a.kw <= a.w) {  // every tap inside the map
      const float* src = image + iy0 * a.sh + ix0 * a.cin;
      for (int64_t ky = 0; ky < a.kh; ++ky) copy_floats(rows + ky * row_floats, src + ky * a.sh, row_floats);
    } else {
      for (int64_t ky = 0; ky < a.kh; ++ky) {
        const int64_t iy = iy0 + ky;
        float* dst = rows + ky * row_floats;
        if (iy < 0 || iy >= a.h)
          std::fill(dst, dst + row_floats, 0.0f);
        else
          gather_kernel_row(a, image + iy * a.sh, ix0, dst);
      }
    }
    if (++ox == a.wo) {
      ox = 0;
      if (++oy == a.ho) oy = 0, ++b;
    }
  }
}

void gather_gemm_block(const gemm::Kernels& kernels, const ConvArgs& a, int64_t m0, int64_t m1, int64_t n0,
                       int64_t n1, float* scratch) {
  const int64_t k = patch_width(a);
  gather_patches(a, m0, m1, scratch);
  const gemm::LinearArgs gemm_args{scratch, k, a.packed, a.bias, nullptr, 0, a.out + m0 * a.cout, a.cout,
                                   k, a.cout, a.act};
  kernels.linear_block(gemm_args, 0, m1 - m0, n0, n1);
}

}  // namespace levit::conv

namespace levit::conv {

const Kernels& kernels_for(Isa isa) {
  static const Kernels scalar{&gemm::kScalarKernels, direct_block_scalar};
#if defined(__x86_64__) || defined(_M_X64)
  static const Kernels avx2{&gemm::kAvx2Kernels, direct_block_avx2};
  static const Kernels avx512{&gemm::kAvx512Kernels, direct_block_avx512};
#endif
#if defined(__aarch64__)
  static const Kernels neon{&gemm::kNeonKernels, direct_block_neon};
#endif
  return *select_variant<const Kernels*>(isa, "convolution", &scalar, LEVIT_IF_X86(&avx2), LEVIT_IF_X86(&avx512),
                                         LEVIT_IF_AARCH64(&neon));
}

// Patches at most this wide run on the direct kernel. Zen 4 (AVX-512, 1 thread, benchmarks/bench_cpu_conv.py,
// ours / oneDNN, batch 16 | 1): K = 27 (the stem's first layer, 3→16) direct 0.98× | 1.41× against gather + GEMM
// 0.48× | 0.45× (the copy of 9-float runs cost more than the GEMM, and a 16-wide C_out half-filled the 32-wide
// panel of the 12×32 GEMM tile of the time, where the direct kernel runs one vector); at K = 144 the two tie (0.96×
// vs 0.97×), at K = 288 / 576 the gather + GEMM is ahead (0.97-1.01× vs 0.89-0.91×: its A rows in L1 beat 12
// strided input rows).
constexpr int64_t kDirectMaxPatch = 64;

void conv_block(const Kernels& kernels, const ConvArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
                float* scratch) {
  if (patch_width(a) <= kDirectMaxPatch)
    kernels.direct(a, kernels.gemm->geometry.nr, m0, m1, n0, n1);
  else
    gather_gemm_block(*kernels.gemm, a, m0, m1, n0, n1, scratch);
}

}  // namespace levit::conv
