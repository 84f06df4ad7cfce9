#if defined(__aarch64__)
#include "common/kernel_prelude.h"
#include "tests/simd_math.h"
#include "simd/vec_neon.h"
#include "simd/activations.h"

LEVIT_TEST_DEFINE_MATH_ARRAY(math_neon, simd::VecNeon)
#endif
