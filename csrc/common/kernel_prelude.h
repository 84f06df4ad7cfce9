// Every standard and intrinsics header a kernel uses. Per-ISA translation units include this *before* their
// `#pragma GCC target`, so library inline code is compiled for baseline x86-64 and the ISA target applies only to
// this project's kernel templates (whose symbols differ per ISA through their Vec type). That keeps AVX code out
// of functions a plain x86-64 CPU may run.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string_view>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#endif
