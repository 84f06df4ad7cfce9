// Whole-or-partial vector loads and stores for loops that run full vectors and then one masked tail: kFull is a
// template argument, so the full-vector loop carries no mask and no test. Templates over the vector type V; include
// after common/kernel_prelude.h (and, in a per-ISA translation unit, after its target pragma).
#pragma once
#include "common/kernel_prelude.h"

namespace levit::simd {

// kFull: all V::kWidth lanes at p; else the first `lanes` (the others read as 0).
template <class V, bool kFull>
inline V load_lanes(const float* p, int lanes) {
  if constexpr (kFull)
    return V::load(p);
  else
    return V::load_partial(p, lanes);
}

// kFull: all lanes; else the first `lanes` (memory past them untouched).
template <class V, bool kFull>
inline void store_lanes(float* p, V v, int lanes) {
  if constexpr (kFull)
    V::store(p, v);
  else
    V::store_partial(p, v, lanes);
}

}  // namespace levit::simd
