#if defined(__x86_64__) || defined(_M_X64)
#include "common/kernel_prelude.h"
#include "tests/simd_exp.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")
#include "simd/vec_avx512.h"
#include "simd/exp.h"

LEVIT_TEST_DEFINE_EXP_ARRAY(exp_avx512, simd::VecAvx512)
#pragma GCC pop_options
#endif
