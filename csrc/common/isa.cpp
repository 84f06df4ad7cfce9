#include "common/isa.h"

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <stdexcept>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define LEVIT_X86 1
#endif

namespace levit {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return "scalar";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
    case Isa::kNeon: return "neon";
  }
  return "unknown";
}

Isa parse_isa(const std::string& name) {
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kNeon})
    if (name == isa_name(isa)) return isa;
  throw std::invalid_argument("ISA must be one of scalar, avx2, avx512, neon; got '" + name + "'");
}

namespace {

#if LEVIT_X86
struct X86Features {
  bool avx2_fma = false;
  bool avx512 = false;
};

// xgetbv without requiring -mxsave on the translation unit.
unsigned long long read_xcr0() {
  unsigned int eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}

X86Features detect_x86() {
  X86Features f;
  unsigned int eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  const bool fma = ecx & (1u << 12), osxsave = ecx & (1u << 27), avx = ecx & (1u << 28);
  if (!(osxsave && avx)) return f;  // the OS must have enabled XSAVE before XGETBV is legal
  const unsigned long long xcr0 = read_xcr0();
  const bool os_ymm = (xcr0 & 0x6) == 0x6;     // XMM + YMM state
  const bool os_zmm = (xcr0 & 0xe6) == 0xe6;   // + opmask, ZMM0-15 upper halves, ZMM16-31
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const bool avx2 = ebx & (1u << 5);
  const bool avx512f = ebx & (1u << 16), avx512dq = ebx & (1u << 17);
  const bool avx512bw = ebx & (1u << 30), avx512vl = ebx & (1u << 31);
  f.avx2_fma = avx2 && fma && os_ymm;
  f.avx512 = f.avx2_fma && os_zmm && avx512f && avx512dq && avx512bw && avx512vl;
  return f;
}

const X86Features& x86_features() {
  static const X86Features f = detect_x86();
  return f;
}
#endif

Isa initial_isa() {
  const char* env = std::getenv("LEVIT_KERNELS_ISA");
  if (env == nullptr || *env == '\0') return best_isa();
  const Isa isa = parse_isa(env);
  if (!isa_supported(isa))
    throw std::invalid_argument(std::string("LEVIT_KERNELS_ISA=") + env +
                                " is not supported by this CPU (best available: " + isa_name(best_isa()) + ")");
  return isa;
}

std::atomic<int> g_active{-1};
std::once_flag g_init;

}  // namespace

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return true;
#if LEVIT_X86
    case Isa::kAvx2: return x86_features().avx2_fma;
    case Isa::kAvx512: return x86_features().avx512;
#endif
#if defined(__aarch64__)
    case Isa::kNeon: return true;  // Advanced SIMD is mandatory on AArch64
#endif
    default: return false;
  }
}

Isa best_isa() {
  for (Isa isa : {Isa::kAvx512, Isa::kAvx2, Isa::kNeon})
    if (isa_supported(isa)) return isa;
  return Isa::kScalar;
}

Isa active_isa() {
  std::call_once(g_init, [] {
    int expected = -1;
    g_active.compare_exchange_strong(expected, static_cast<int>(initial_isa()));
  });
  return static_cast<Isa>(g_active.load(std::memory_order_relaxed));
}

void set_active_isa(Isa isa) {
  if (!isa_supported(isa))
    throw std::invalid_argument(std::string("ISA '") + isa_name(isa) + "' is not supported by this CPU (best available: " +
                                isa_name(best_isa()) + ")");
  std::call_once(g_init, [] {});  // an explicit choice wins over LEVIT_KERNELS_ISA
  g_active.store(static_cast<int>(isa), std::memory_order_relaxed);
}

}  // namespace levit
