// One core's fp32 FMA peak with AVX2: 12 independent 8-lane FMA chains (2 FMA pipes x 4-cycle latency need >= 8),
// no memory traffic. Prints the best of 7 runs in GFLOP/s, timed by the thread's CPU time (other processes
// time-slicing the core do not count). Built and run by bench_cpu_gemm.py:
//   g++ -O2 -mavx2 -mfma benchmarks/fma_peak.cpp -o fma_peak && ./fma_peak
#include <immintrin.h>

#include <cstdio>
#include <ctime>

#define STEP(a) a = _mm256_fmadd_ps(a, m, c);
#define FMA12 STEP(a0) STEP(a1) STEP(a2) STEP(a3) STEP(a4) STEP(a5) STEP(a6) STEP(a7) STEP(a8) STEP(a9) STEP(a10) STEP(a11)

static double cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main() {
  __m256 a0 = _mm256_set1_ps(0.0f), a1 = _mm256_set1_ps(0.1f), a2 = _mm256_set1_ps(0.2f), a3 = _mm256_set1_ps(0.3f),
         a4 = _mm256_set1_ps(0.4f), a5 = _mm256_set1_ps(0.5f), a6 = _mm256_set1_ps(0.6f), a7 = _mm256_set1_ps(0.7f),
         a8 = _mm256_set1_ps(0.8f), a9 = _mm256_set1_ps(0.9f), a10 = _mm256_set1_ps(1.0f), a11 = _mm256_set1_ps(1.1f);
  const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);  // converges, never denormal
  const long iters = 10000000;
  double best = 0.0;
  for (int rep = 0; rep < 7; ++rep) {
    const double t0 = cpu_seconds();
    for (long i = 0; i < iters; ++i) { FMA12 FMA12 FMA12 FMA12 }
    const double s = cpu_seconds() - t0;
    const double gflops = iters * 4.0 * 12 * 16 / s / 1e9;  // 16 flops per 8-lane FMA
    if (gflops > best) best = gflops;
  }
  __m256 sum = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
  sum = _mm256_add_ps(sum, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
  float out[8];
  _mm256_storeu_ps(out, sum);
  std::printf("%.1f\n", best + 0.0 * out[0]);  // uses the sums so the loop is not dropped
  return 0;
}
