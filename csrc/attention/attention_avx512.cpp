// AVX-512 (F/DQ/BW/VL) variant of the attention kernels. Only the code after the target pragma is compiled for
// AVX-512, and all of it is templated over VecAvx512 (see common/kernel_prelude.h).
//
// Register tile 4 rows × 2 vectors (8 accumulators + 2 loads + 1 broadcast), as on AVX2, replacing a 6 × 4 that had
// never been measured. Measured on AMD EPYC Zen 4 (family 25 model 17, 512-bit ops on 256-bit units, L1D 32 KiB;
// avx512, 1 thread, batch 16) over the 15 attention and shrink shapes of LeViT-128S/256/384, alternating processes
// (thread CPU time, medians of 3-4 rounds) on a machine under load average 6-9 from other jobs: the same-variant
// spread per shape was up to ±20% there, so only the sums over the 15 shapes are worth quoting. 4 × 2 vs 6 × 4:
// q/k/v views of the packed qkv (as in the model) 78.8 and 83.1 ms vs 82.0 and 85.8 ms (two runs, A B A B),
// contiguous q/k/v 80.9 vs 85.3 ms; `levit_kernels bench` (contiguous inputs, separate runs) N = 196 attention
// 42 → 45% of peak at LeViT-128S, 50 → 56% at 256, 51 → 55% at 384, the N = 49 / 16 and shrink shapes unchanged
// within noise. 6 × 2 and 8 × 2 measured level with 4 × 2, 6 × 3 and 8 × 3 at or below 6 × 4, 12 × 2 in between.
// An earlier run that put 6 × 4 first in every round had 4 × 2 1.0-1.8x faster at every shape; it did not repeat
// with the order changed, so it is not counted. Not settled here: whether any tile is better at the small N
// (49, 16), where per-item overheads (packing kᵀ, the bias fill) weigh more than the tile.
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

const Kernels kAvx512Kernels = make_kernels<simd::VecAvx512, 4, 2>();

}  // namespace levit::attention
#pragma GCC pop_options
#endif
