// AVX-512 (F/DQ/BW/VL) variant of the attention kernels. Only the code after the target pragma is compiled for
// AVX-512, and all of it is templated over VecAvx512 (see common/kernel_prelude.h).
//
// Register tile 4 rows × 4 vectors (16 accumulators + 4 loads + 1 broadcast): half the broadcasts per FMA of the
// 4 × 2 it replaces, which perf showed next to every FMA of the inner loops. Measured on AMD EPYC Zen 4 (family 25
// model 17, 512-bit ops on 256-bit units, L1D 32 KiB; avx512, 1 thread, batch 16, q/k/v views of the packed qkv
// as in the model; medians of 6 alternating rounds, per-round spread up to ±15%): LeViT-256 stage 1 7.39 → 7.00 ms,
// stage 2 0.91 → 0.86 ms, LeViT-384 stage 1 11.0 → 10.6 ms, LeViT-128S stage 1 (D = 16) and LeViT-256 stage 3
// (N = 16) level; the six shrink shapes of `levit_kernels bench --ops shrink` level to 10% faster (two rounds).
// 3 × 4 was 10-25% slower than both. History: 4 × 2 had replaced a 6 × 4 that had never been measured (sum over the
// 15 attention and shrink shapes 78.8 vs 82.0 ms, machine under load); 6 × 2 and 8 × 2 measured level with 4 × 2,
// 6 × 3 and 8 × 3 at or below 6 × 4.
#if defined(__x86_64__) || defined(_M_X64)
#include "common/kernel_prelude.h"
#include "attention/attention_kernel.h"

#pragma GCC push_options
// GCC 12's own _mm512_reduce_*_ps trips -Wmaybe-uninitialized inside avx512fintrin.h (a false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")
#include "simd/vec_avx512.h"
#include "attention/attention_impl.h"

namespace levit::attention {

const Kernels kAvx512Kernels = make_kernels<simd::VecAvx512, 4, 4>();

}  // namespace levit::attention
#pragma GCC pop_options
#endif
