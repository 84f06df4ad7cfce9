// ISA-independent half of the implicit-GEMM convolution: the patch gather (copies and zero fill, compiled for the
// baseline instruction set) and the tile driver; the FMAs run in the ISA's GEMM kernel table.
#include "conv/conv.h"

#include <algorithm>

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

// The kw·cin floats of one kernel row of the patch: input pixels ix0, ix0 + 1, ... of input row `src` (already
// offset to the image and row), zero outside [0, w).
void gather_kernel_row(const ConvArgs& a, const float* src, int64_t ix0, float* dst) {
  const int64_t cin = a.cin;
  const int64_t kx0 = std::clamp<int64_t>(-ix0, 0, a.kw), kx1 = std::clamp<int64_t>(a.w - ix0, kx0, a.kw);
  std::fill(dst, dst + kx0 * cin, 0.0f);
  std::fill(dst + kx1 * cin, dst + a.kw * cin, 0.0f);
  if (a.sc == 1 && a.sw == cin) {  // NHWC rows: the in-map pixels of this kernel row are one contiguous run
    std::copy_n(src + (ix0 + kx0) * cin, (kx1 - kx0) * cin, dst + kx0 * cin);
  } else if (a.sc == 1) {
    for (int64_t kx = kx0; kx < kx1; ++kx) std::copy_n(src + (ix0 + kx) * a.sw, cin, dst + kx * cin);
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
  int64_t b = m0 / (a.ho * a.wo), oy = m0 / a.wo % a.ho, ox = m0 % a.wo;
  for (int64_t m = m0; m < m1; ++m, rows += k) {
    const float* image = a.x + b * a.sb;
    const int64_t iy0 = oy * a.stride_h - a.pad_h, ix0 = ox * a.stride_w - a.pad_w;
    for (int64_t ky = 0; ky < a.kh; ++ky) {
      const int64_t iy = iy0 + ky;
      float* dst = rows + ky * row_floats;
      if (iy < 0 || iy >= a.h)
        std::fill(dst, dst + row_floats, 0.0f);
      else
        gather_kernel_row(a, image + iy * a.sh, ix0, dst);
    }
    if (++ox == a.wo) {
      ox = 0;
      if (++oy == a.ho) oy = 0, ++b;
    }
  }
}

void conv_block(const gemm::Kernels& kernels, const ConvArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
                float* scratch) {
  const int64_t k = patch_width(a);
  gather_patches(a, m0, m1, scratch);
  const gemm::LinearArgs gemm_args{scratch, k, a.packed, a.bias, nullptr, 0, a.out + m0 * a.cout, a.cout,
                                   k, a.cout, a.act};
  kernels.linear_block(gemm_args, 0, m1 - m0, n0, n1);
}

}  // namespace levit::conv
