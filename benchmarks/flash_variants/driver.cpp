// Interleaved timing of flash-kernel variants (shared objects from entry.cpp) on one thread, torch-free: each
// repetition runs every variant in turn on the same inputs (so background load hits all alike), and the median
// of the thread's CPU time is printed per variant with its ratio to the first one and its largest difference
// from the first one's output. Shapes: benchmarks/bench_cpu_attention.py's FLASH_SHAPES (issue 12).
// Usage: driver REPS SHAPE|all VARIANT.so...
#include <dlfcn.h>
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "flash/flash_kernel.h"

namespace {

using levit::flash::Problem;
struct OpaquePlan;  // each variant's own Plan (entry.cpp)
using PlanFn = const OpaquePlan* (*)(const Problem&, int);
using SizeFn = size_t (*)(const OpaquePlan*);
using RunFn = void (*)(const Problem&, const OpaquePlan*, float*);

struct Variant {
  std::string name;
  PlanFn plan;
  SizeFn workspace_floats;
  RunFn run;
};

struct Shape {
  const char* name;
  int batch, heads, n, d;
};
constexpr Shape kShapes[] = {{"N3136", 2, 1, 3136, 64}, {"N784", 2, 1, 784, 64}, {"N197", 16, 6, 197, 64}};

double thread_seconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

void bench(const Shape& s, const std::vector<Variant>& variants, int reps) {
  const int64_t head = static_cast<int64_t>(s.n) * s.d, elems = s.batch * s.heads * head;
  std::vector<float> q(elems), k(elems), v(elems);
  std::mt19937 gen(1);
  std::normal_distribution<float> normal;
  for (auto* t : {&q, &k, &v})
    for (float& x : *t) x = normal(gen);
  Problem p;
  p.batch = s.batch, p.heads = s.heads, p.num_queries = s.n, p.num_keys = s.n, p.key_dim = s.d, p.value_dim = s.d;
  p.scale = 1.0f / std::sqrt(static_cast<float>(s.d));
  for (auto [view, data] : {std::pair{&p.q, q.data()}, {&p.k, k.data()}, {&p.v, v.data()}}) {
    view->data = data;
    view->stride[0] = s.heads * head, view->stride[1] = head, view->stride[2] = s.d, view->stride[3] = 1;
  }
  const size_t n = variants.size();
  std::vector<std::vector<float>> outs(n, std::vector<float>(elems));
  std::vector<const OpaquePlan*> plans;
  std::vector<std::vector<float>> workspaces;
  for (const Variant& var : variants) {
    plans.push_back(var.plan(p, 1));
    workspaces.emplace_back(var.workspace_floats(plans.back()) + 16);
  }
  std::vector<std::vector<double>> times(n);
  for (int r = 0; r <= reps; ++r)  // round 0 warms up
    for (size_t i = 0; i < n; ++i) {
      p.out = outs[i].data();
      float* ws = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(workspaces[i].data()) + 63) & ~uintptr_t{63});
      const double t0 = thread_seconds();
      variants[i].run(p, plans[i], ws);
      if (r > 0) times[i].push_back(thread_seconds() - t0);
    }
  const double flops = 4.0 * s.batch * s.heads * static_cast<double>(s.n) * s.n * s.d;
  double first = 0;
  for (size_t i = 0; i < n; ++i) {
    std::sort(times[i].begin(), times[i].end());
    const double median = times[i][times[i].size() / 2];
    if (i == 0) first = median;
    double diff = 0;
    for (int64_t e = 0; e < elems; ++e) diff = std::max(diff, static_cast<double>(std::fabs(outs[i][e] - outs[0][e])));
    std::printf("%-6s %-40s %8.2f ms %6.1f GFLOP/s  x%.3f vs first  max diff %.1e\n", s.name,
                variants[i].name.c_str(), median * 1e3, flops / median / 1e9, first / median, diff);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s REPS SHAPE|all VARIANT.so...\n", argv[0]);
    return 2;
  }
  const int reps = std::atoi(argv[1]);
  const std::string which = argv[2];
  std::vector<Variant> variants;
  for (int i = 3; i < argc; ++i) {
    void* lib = dlopen(argv[i], RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      std::fprintf(stderr, "%s\n", dlerror());
      return 1;
    }
    variants.push_back({argv[i], reinterpret_cast<PlanFn>(dlsym(lib, "variant_plan")),
                        reinterpret_cast<SizeFn>(dlsym(lib, "variant_workspace_floats")),
                        reinterpret_cast<RunFn>(dlsym(lib, "variant_run"))});
  }
  for (const Shape& s : kShapes)
    if (which == "all" || which == s.name) bench(s, variants, reps);
}
