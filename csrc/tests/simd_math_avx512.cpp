#if defined(__x86_64__) || defined(_M_X64)
#include "common/kernel_prelude.h"
#include "tests/simd_math.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")
#include "simd/vec_avx512.h"
#include "simd/activations.h"

LEVIT_TEST_DEFINE_MATH_ARRAY(math_avx512, simd::VecAvx512)
#pragma GCC pop_options
#endif
