// Instruction-set variants of the CPU kernels and the run-time choice between them.
// Torch-free so the standalone test programs (csrc/tests) can use it.
#pragma once
#include <string>

namespace levit {

enum class Isa : int { kScalar = 0, kAvx2 = 1, kAvx512 = 2, kNeon = 3 };

const char* isa_name(Isa isa);
// Parses "scalar" | "avx2" | "avx512" | "neon"; throws std::invalid_argument naming the value otherwise.
Isa parse_isa(const std::string& name);
// Whether this CPU and OS can run `isa` (cpuid feature bits and, for AVX, the XGETBV register-state check).
bool isa_supported(Isa isa);
// Best variant this machine supports. Detected once per process.
Isa best_isa();
// Variant the kernels use: LEVIT_KERNELS_ISA if set (an unsupported or unknown value throws), else best_isa().
// Read once per process; set_active_isa() overrides it afterwards (tests run every variant in one process).
Isa active_isa();
// Throws std::invalid_argument if `isa` is not supported here.
void set_active_isa(Isa isa);

}  // namespace levit
