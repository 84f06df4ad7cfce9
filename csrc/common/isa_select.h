// The run-time choice between the per-ISA entry points of a kernel. A build holds the x86 variants on x86-64 only
// and NEON on AArch64 only; the variants it lacks are passed as nullptr through LEVIT_IF_X86 / LEVIT_IF_AARCH64
// (whose argument is then never named, so it need not be declared). Torch-free, for the standalone tests too.
#pragma once
#include <stdexcept>
#include <string>

#include "common/isa.h"

#if defined(__x86_64__) || defined(_M_X64)
#define LEVIT_IF_X86(fn) (fn)
#else
#define LEVIT_IF_X86(fn) nullptr
#endif
#if defined(__aarch64__)
#define LEVIT_IF_AARCH64(fn) (fn)
#else
#define LEVIT_IF_AARCH64(fn) nullptr
#endif

namespace levit {

// The variant of `isa`; throws std::invalid_argument naming `kernel` when this build has none.
template <class Fn>
Fn select_variant(Isa isa, const char* kernel, Fn scalar, Fn avx2, Fn avx512, Fn neon) {
  const Fn fn = isa == Isa::kScalar   ? scalar
                : isa == Isa::kAvx2   ? avx2
                : isa == Isa::kAvx512 ? avx512
                : isa == Isa::kNeon   ? neon
                                      : nullptr;
  if (fn == nullptr)
    throw std::invalid_argument(std::string("no ") + kernel + " kernel for ISA '" + isa_name(isa) + "' in this build");
  return fn;
}

}  // namespace levit
