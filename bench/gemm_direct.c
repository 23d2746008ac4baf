/*
 * The baseline for the native backend's GEMM: cblas_sgemm called straight from C, with the same OpenBLAS
 * (bench/gemm.ts compiles it with the paths scripts/find-openblas.cjs gives the addon).
 *
 *   gemm_direct M K N REPEATS   C[M×N] = A[M×K]·B[K×N], row-major, no transposes
 *
 * One untimed warm-up call, then REPEATS timed calls, each printed as a JSON line:
 *   {"m":M,"k":K,"n":N,"seconds":s,"gflops":g}
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#ifdef __APPLE__
#include <Accelerate/Accelerate.h>
#else
#include <cblas.h>
#endif

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char** argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s M K N REPEATS\n", argv[0]);
    return 2;
  }
  const int m = atoi(argv[1]), k = atoi(argv[2]), n = atoi(argv[3]), repeats = atoi(argv[4]);
  if (m <= 0 || k <= 0 || n <= 0 || repeats <= 0) {
    fprintf(stderr, "M, K, N and REPEATS must be positive\n");
    return 2;
  }
  float* a = malloc(sizeof(float) * (size_t)m * k);
  float* b = malloc(sizeof(float) * (size_t)k * n);
  float* c = malloc(sizeof(float) * (size_t)m * n);
  if (!a || !b || !c) return 1;
  unsigned s = 12345;
  for (size_t i = 0; i < (size_t)m * k; i++) a[i] = (float)((s = s * 1103515245u + 12345u) >> 8) / 16777216.0f - 0.5f;
  for (size_t i = 0; i < (size_t)k * n; i++) b[i] = (float)((s = s * 1103515245u + 12345u) >> 8) / 16777216.0f - 0.5f;

  for (int r = -1; r < repeats; r++) {
    const double t0 = now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
    const double dt = now() - t0;
    if (r >= 0) {
      printf("{\"m\":%d,\"k\":%d,\"n\":%d,\"seconds\":%.9f,\"gflops\":%.3f}\n", m, k, n, dt, 2.0 * m * n * k / dt * 1e-9);
    }
  }
  fflush(stdout);
  free(a);
  free(b);
  free(c);
  return 0;
}
