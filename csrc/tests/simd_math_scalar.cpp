#include "common/kernel_prelude.h"
#include "tests/simd_math.h"
#include "simd/vec_scalar.h"
#include "simd/activations.h"

LEVIT_TEST_DEFINE_MATH_ARRAY(math_scalar, simd::VecScalar)
