// One flash-kernel variant as a shared object for driver.cpp: a source tree's make_plan and run_avx2 under
// unmangled names, so several trees (worktrees, experiment copies) load side by side (RTLD_LOCAL, hidden
// visibility: each keeps its own template instances). Built by scripts/bench_flash_variants.sh.
#include "flash/flash_kernel.h"

extern "C" __attribute__((visibility("default"))) levit::flash::Plan variant_plan(const levit::flash::Problem& p,
                                                                                   int threads) {
  return levit::flash::make_plan(p, threads);
}

extern "C" __attribute__((visibility("default"))) void variant_run(const levit::flash::Problem& p,
                                                                  const levit::flash::Plan& plan, int64_t begin,
                                                                  int64_t end, float* workspace) {
  levit::flash::run_avx2(p, plan, begin, end, workspace);
}
