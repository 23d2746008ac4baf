// Shared helpers of the native kernels: thread control, a parallel-for over index ranges, and strided views.
// Nothing here knows about N-API, so the kernels stay plain C++ (addon.cc does all the JS conversion).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

// Hot loops compiled twice, for AVX2 and for the build's baseline, the version picked at load time (GCC's function
// multiversioning; x86-64 Linux only). Without FMA contraction (-ffp-contract=off) both compute the same values,
// except where vector width changes the order of a reduction.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define PEFT_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define PEFT_SIMD_CLONES
#endif

namespace peft {

// Work sizes (in elements) below which a kernel runs on the calling thread. Waking the OpenMP team costs a few
// microseconds on an idle machine, but on a shared one a thread of the team may be waiting for a core another
// process holds, and then every parallel region costs a scheduler time slice (milliseconds). Memory-bound loops
// gain little from a second thread anyway (one core moves most of the bandwidth), so they stay on one thread up to
// a few MiB; loops with a transcendental function per element are split from a few tens of microseconds of work.
constexpr int64_t kGrainCheap = 1 << 20;   // memory-bound loops: copy, add, fill, norms
constexpr int64_t kGrainMath = 1 << 15;    // a vexp or libm call per element: exp, tanh, erf, pow, softmax

int maxThreads();
void setThreads(int n);
// The most threads setThreads accepts: 4 × onlineCores() (more never helps: every region waits for its slowest
// thread, and an oversubscribed thread waits a time slice), within OpenMP's thread limit.
int threadLimit();
// Processors online on this machine (not those this process may use: the same for every run on the machine).
int onlineCores();

// Threads a parallel region may use now: maxThreads(), or 1 while the machine is contended. On a shared machine a
// thread of our team may have to wait for a core that another process holds; the region then lasts until that
// thread gets the core back (a scheduler time slice, milliseconds), which costs far more than one thread would
// take. Every parallel region measures how late its threads start; when one starts more than kLateSeconds late,
// the next regions run on one thread, for a number of regions that doubles while the contention lasts (32 … 512:
// a probe costs at most one time slice, staying serial too long costs half the machine) and starts over once a
// probe finds the threads on time. Results never depend on it: work is cut into pieces fixed by the shapes.
// setAdaptive(false) (PEFT_TS_ADAPTIVE_THREADS=0) turns this off.
int activeThreads();
void setAdaptive(bool on);
// Counts for diagnostics: parallel regions run, how many started a thread late, regions run serially instead.
struct AdaptiveStats {
  int64_t parallel = 0, late = 0, serial = 0;
  double lateSum = 0, lateMax = 0;
};
extern AdaptiveStats adaptiveStats;
// Records how late the threads of a region started (seconds); called after every parallel region.
void noteRegion(double maxLateSeconds);
// Counts one region decided serial by activeThreads() == 1 (advances the back-off).
void noteSerialRegion();

// Threads a parallel loop over n items with a grain of `grain` items per thread uses: at most activeThreads().
inline int chunksFor(int64_t n, int64_t grain) {
  int64_t t = grain > 0 ? n / grain : n;
  int m = activeThreads();
  return static_cast<int>(t < 1 ? 1 : (t > m ? m : t));
}

// Runs f(c) for c in [0, T) on T threads (T ≥ 2), measuring how late each thread starts.
template <class F>
void parallelRegion(int T, F&& f) {
#ifdef _OPENMP
  const double t0 = omp_get_wtime();
  double late = 0;
#pragma omp parallel for schedule(static, 1) num_threads(T) reduction(max : late)
  for (int c = 0; c < T; c++) {
    const double d = omp_get_wtime() - t0;
    late = d > late ? d : late;
    f(c);
  }
  noteRegion(late);
#else
  for (int c = 0; c < T; c++) f(c);
#endif
}

// Calls f(begin, end) on disjoint consecutive pieces of [0, n), one per thread, in parallel when n is at least two
// grains. Which thread gets which items depends on the thread count, so f must compute each item the same way
// wherever it runs (element-wise work, rows, or the fixed chunks below).
template <class F>
void parallelFor(int64_t n, int64_t grain, F&& f) {
  if (n <= 0) return;
  const int T = chunksFor(n, grain);
  if (T == 1) {
    if (grain > 0 && n / grain >= 2 && maxThreads() > 1) noteSerialRegion();
    f(int64_t(0), n);
    return;
  }
  parallelRegion(T, [&](int c) { f(n * c / T, n * (c + 1) / T); });
}

// Runs BLAS single-threaded for the lifetime of the guard. The OpenMP build of OpenBLAS reads the OpenMP thread count
// on every call (our parallel regions inherit the setting for nested calls); the pthreads build was told once, in
// setThreads.
class SingleThreadedBlas {
 public:
  SingleThreadedBlas() {
#if defined(PEFT_BLAS_OPENMP)
    omp_set_num_threads(1);
#endif
  }
  ~SingleThreadedBlas() {
#if defined(PEFT_BLAS_OPENMP)
    omp_set_num_threads(maxThreads());
#endif
  }
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;
};

// Fixed chunks for reductions: [0, n) cut into chunks of `size` (the last one shorter), their number a function of
// n and size alone. f(c, begin, end) runs once per chunk, on some thread (in parallel from two grains of work on);
// partial results kept per chunk and combined in chunk order are the same whatever the thread count.
inline int64_t fixedChunkCount(int64_t n, int64_t size) { return n <= 0 ? 0 : (n + size - 1) / size; }

template <class F>
void forFixedChunks(int64_t n, int64_t size, int64_t grain, F&& f) {
  parallelFor(fixedChunkCount(n, size), std::max<int64_t>(1, grain / size), [&](int64_t lo, int64_t hi) {
    for (int64_t c = lo; c < hi; c++) f(c, c * size, std::min(n, (c + 1) * size));
  });
}

// ---- strided views ---------------------------------------------------------------------------------------------

constexpr int kMaxViews = 4;
constexpr int kMaxDims = 40;  // after collapsing size-1 axes a view of < 2^40 elements has at most 40 axes

// Up to kMaxViews views that share one shape, with size-1 axes dropped and mergeable axes fused (so a contiguous
// tensor becomes one axis and a broadcast row [1, n] → [m, n] becomes two). Iteration is row-major, the order
// of the contiguous output.
struct Strided {
  int nv = 0;
  int nd = 0;
  int64_t size = 0;
  int64_t shape[kMaxDims];
  int64_t stride[kMaxViews][kMaxDims];
  int64_t offset[kMaxViews];

  // Innermost-axis stride of view v (the one kernels specialise on: 1 = contiguous, 0 = broadcast).
  int64_t inner(int v) const { return stride[v][nd - 1]; }
  int64_t rowLength() const { return shape[nd - 1]; }

  // Element range [lo, hi] of storage positions that view v touches (for bounds checks); size must be > 0.
  void extent(int v, int64_t& lo, int64_t& hi) const {
    lo = hi = offset[v];
    for (int d = 0; d < nd; d++) {
      int64_t s = (shape[d] - 1) * stride[v][d];
      (s < 0 ? lo : hi) += s;
    }
  }
};

// Builds a Strided from one shape and per-view strides/offsets; throws std::invalid_argument on bad input.
Strided makeStrided(int nv, int nd, const double* shape, const double* const* strides, const double* offsets);

// Calls seg(outIndex, offsets, n) for the elements [begin, end) in row-major order, one call per piece of an
// innermost row: offsets[v] is the storage position of the piece's first element in view v, and the next
// elements follow at s.inner(v) apart.
template <class Seg>
void forRange(const Strided& s, int64_t begin, int64_t end, Seg&& seg) {
  if (begin >= end) return;
  const int nd = s.nd, nv = s.nv;
  const int64_t len = s.shape[nd - 1];
  int64_t idx[kMaxDims];
  int64_t off[kMaxViews];
  int64_t row = begin / len, j = begin % len;
  for (int v = 0; v < nv; v++) off[v] = s.offset[v];
  for (int d = nd - 2; d >= 0; d--) {
    idx[d] = row % s.shape[d];
    row /= s.shape[d];
    for (int v = 0; v < nv; v++) off[v] += idx[d] * s.stride[v][d];
  }
  int64_t pos = begin;
  while (true) {
    int64_t n = len - j < end - pos ? len - j : end - pos;
    int64_t segOff[kMaxViews];
    for (int v = 0; v < nv; v++) segOff[v] = off[v] + j * s.stride[v][nd - 1];
    seg(pos, static_cast<const int64_t*>(segOff), n);
    pos += n;
    if (pos >= end) return;
    j = 0;
    for (int d = nd - 2; d >= 0; d--) {  // next row: odometer increment over the outer axes
      for (int v = 0; v < nv; v++) off[v] += s.stride[v][d];
      if (++idx[d] < s.shape[d]) break;
      for (int v = 0; v < nv; v++) off[v] -= idx[d] * s.stride[v][d];
      idx[d] = 0;
    }
  }
}

// ---- rows of views ---------------------------------------------------------------------------------------------

// Up to kMaxViews views sharing one shape [..., cols], walked row by row (a row = the last axis): row-wise kernels
// (masked softmax, rotary) take strided and broadcast views this way. `lead` is the collapsed Strided of the
// leading axes; inner[v] is view v's stride along the last axis.
struct Rows {
  Strided lead;
  int64_t rows = 0, cols = 0;
  int64_t inner[kMaxViews];
};

Rows makeRows(int nv, int nd, const double* shape, const double* const* strides, const double* offsets);

// Calls f(row, offsets) for rows [begin, end): offsets[v] is the storage position of the row's first element in
// view v.
template <class F>
void forRows(const Rows& r, int64_t begin, int64_t end, F&& f) {
  if (begin >= end) return;
  const Strided& s = r.lead;
  const int nd = s.nd, nv = s.nv;
  int64_t idx[kMaxDims];
  int64_t off[kMaxViews];
  for (int v = 0; v < nv; v++) off[v] = s.offset[v];
  int64_t rem = begin;
  for (int d = nd - 1; d >= 0; d--) {
    idx[d] = rem % s.shape[d];
    rem /= s.shape[d];
    for (int v = 0; v < nv; v++) off[v] += idx[d] * s.stride[v][d];
  }
  for (int64_t row = begin; row < end; row++) {
    f(row, static_cast<const int64_t*>(off));
    for (int d = nd - 1; d >= 0; d--) {
      for (int v = 0; v < nv; v++) off[v] += s.stride[v][d];
      if (++idx[d] < s.shape[d]) break;
      for (int v = 0; v < nv; v++) off[v] -= idx[d] * s.stride[v][d];
      idx[d] = 0;
    }
  }
}

// ---- conversions with JavaScript's semantics --------------------------------------------------------------------

// ECMAScript ToInt32 (what storing a double into an Int32Array does): NaN and ±∞ → 0, otherwise truncate and
// wrap modulo 2³².
inline int32_t toInt32(double x) {
  if (x > -2147483649.0 && x < 2147483648.0) return static_cast<int32_t>(x);  // the common case (truncates)
  if (!std::isfinite(x)) return 0;
  double m = std::fmod(std::trunc(x), 4294967296.0);  // exact
  if (m < 0) m += 4294967296.0;
  return static_cast<int32_t>(static_cast<uint32_t>(m));
}

// Stores a double the way a typed-array assignment does.
inline void store(float* p, double v) { *p = static_cast<float>(v); }
inline void store(int32_t* p, double v) { *p = toInt32(v); }

}  // namespace peft
