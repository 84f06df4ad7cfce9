// One flash-kernel variant as a shared object for driver.cpp: a source tree's make_plan and run_<isa> under
// unmangled names, so several trees (worktrees, experiment copies) load side by side (RTLD_LOCAL, hidden
// visibility: each keeps its own template instances). Built by scripts/bench_flash_variants.sh. The plan stays
// opaque to the driver: trees may differ in the Plan's layout (only Problem must match).
#include "flash/flash_kernel.h"

// The kernel variant timed: run_avx2 unless the script passes -DVARIANT_RUN=run_avx512.
#ifndef VARIANT_RUN
#define VARIANT_RUN run_avx2
#endif

using levit::flash::Plan;
using levit::flash::Problem;

extern "C" __attribute__((visibility("default"))) const Plan* variant_plan(const Problem& p, int threads) {
  return new Plan(levit::flash::make_plan(p, threads));
}

extern "C" __attribute__((visibility("default"))) size_t variant_workspace_floats(const Plan* plan) {
  return plan->workspace_floats;
}

extern "C" __attribute__((visibility("default"))) void variant_run(const Problem& p, const Plan* plan, float* workspace) {
  levit::flash::VARIANT_RUN(p, *plan, 0, plan->items, workspace);
}
