#include "common/kernel_prelude.h"
#include "tests/simd_exp.h"
#include "simd/vec_scalar.h"
#include "simd/exp.h"

LEVIT_TEST_DEFINE_EXP_ARRAY(exp_scalar, simd::VecScalar)
