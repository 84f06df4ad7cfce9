// AVX-512 GEMM kernels: 6 × 64 register tile (24 zmm accumulators + 4 panel loads + 1 broadcast of 32 zmm).
//
// Why 6 × 64 and not 12 × 32 (the tile before; same 24 accumulators, same FMAs per k): per k it needs 4 panel loads
// + 6 broadcasts instead of 2 + 12, streams 6 rows of x beside the panel instead of 12, and reads x once per 64
// output columns instead of per 32. The 6 rows also fit the L1's 8 ways when the row stride is a multiple of 4 KiB
// (K = 1024, 2048: 12 rows 4 KiB apart all fall in one set of Zen 4's 32 KiB 8-way L1 and evict each other; Zen 5
// and current Xeons have 48 KiB 12-way, still 4 KiB per way, so the reason holds there too).
// Measured on AMD EPYC Zen 4, avx512, 1 thread (standalone probe of linear_block, interleaved rounds, thread CPU
// time, medians; geomean ratio to 12 × 32 over the LeViT-256 projections, several runs): 6 × 64 1.08-1.10 (also
// 1.14 over LeViT-128S's, 1.10 over LeViT-384's), 7 × 64 (28 accumulators) 1.07-1.09, 8 × 48 1.08, 9 × 48 1.05,
// 14 × 32 1.00, 12 × 32 with K blocks of 256 0.99 / of 128 0.95; 6 × 64 with K blocks of 256 / 128 / 64: 0.97 /
// 0.93 / 0.88 of 6 × 64 unblocked (the panel streams from L2 fast enough; the partial sums' extra loads and stores
// cost more). Largest single gain: K = 1024 → 384 (M = 784) 1.40-1.46×.
// Row tiles outer over weights of up to 64 Ki floats (256 KiB, a quarter of Zen 4's 1 MiB L2; Zen 5 and Xeons have
// 1-2 MiB): see linear_block. AVX2 keeps panels outer everywhere (not measured there).
#if defined(__x86_64__) || defined(_M_X64)
#include "common/kernel_prelude.h"
#include "gemm/gemm.h"  // before the target pragma: its inline code stays baseline
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")
// GCC 12 false positive inside avx512fintrin.h (_mm512_undefined_ps is self-initialized on purpose).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "simd/vec_avx512.h"
#include "gemm/gemm_kernel.h"

namespace levit::gemm {
const Kernels kAvx512Kernels = make_kernels<simd::VecAvx512, 6, 4, 2048, 64 * 1024>();
}
#pragma GCC pop_options
#endif
