#if defined(__x86_64__) || defined(_M_X64)
#include "common/kernel_prelude.h"
#include "tests/simd_math.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#include "simd/vec_avx2.h"
#include "simd/activations.h"

LEVIT_TEST_DEFINE_MATH_ARRAY(math_avx2, simd::VecAvx2)
#pragma GCC pop_options
#endif
