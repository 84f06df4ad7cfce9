#if defined(__aarch64__)
#include "common/kernel_prelude.h"
#include "tests/simd_exp.h"
#include "simd/vec_neon.h"
#include "simd/exp.h"

LEVIT_TEST_DEFINE_EXP_ARRAY(exp_neon, simd::VecNeon)
#endif
