// Thread control and strided-view construction.
#include "common.h"

#include <unistd.h>

#ifdef PEFT_BLAS_OPENBLAS
#include <cblas.h>
#endif

namespace peft {

namespace {
// The thread count asked for (PEFT_TS_THREADS / setThreads / OpenMP's default); omp_set_num_threads(1) around a
// single-threaded BLAS call does not change it.
int configured = [] {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}();
}  // namespace

int maxThreads() { return configured; }

int onlineCores() {
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n >= 1 ? static_cast<int>(n) : 1;
}

int threadLimit() {
  int limit = 4 * onlineCores();
#ifdef _OPENMP
  if (omp_get_thread_limit() < limit) limit = omp_get_thread_limit();
#endif
  return limit;
}

namespace {
constexpr double kLateSeconds = 1e-3;
constexpr int64_t kMinSerialRegions = 32;
constexpr int64_t kMaxSerialRegions = 512;
// Kernels run on the thread that calls the addon (JavaScript's), one at a time: plain variables suffice.
int64_t serialLeft = 0;       // regions still to run on one thread
int64_t backoff = kMinSerialRegions;
bool lastLate = false;        // whether the previous parallel region started late
bool adaptive = true;
}  // namespace

int activeThreads() { return serialLeft > 0 ? 1 : maxThreads(); }

void setAdaptive(bool on) {
  adaptive = on;
  if (!on) serialLeft = 0;
}

AdaptiveStats adaptiveStats;

void noteSerialRegion() {
  adaptiveStats.serial++;
  if (serialLeft > 0) serialLeft--;
}

void noteRegion(double late) {
  adaptiveStats.parallel++;
  adaptiveStats.lateSum += late;
  if (late > kLateSeconds) adaptiveStats.late++;
  if (late > adaptiveStats.lateMax) adaptiveStats.lateMax = late;
  if (!adaptive) return;
  // Two late regions in a row: a single one is a burst of other work (a server's clients, a thread woken from sleep
  // after an idle moment) that is gone by the next region, and going serial for it costs more than it saves.
  const bool isLate = late > kLateSeconds;
  if (isLate && lastLate) {
    serialLeft = backoff;
    backoff = backoff * 2 > kMaxSerialRegions ? kMaxSerialRegions : backoff * 2;
  } else if (!isLate) {
    backoff = kMinSerialRegions;
  }
  lastLate = isLate;
}

void setThreads(int n) {
  if (n < 1) n = 1;
  configured = n;
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
#if defined(PEFT_BLAS_OPENBLAS) && !defined(PEFT_BLAS_OPENMP)
  // BLAS calls are single-threaded, each on a piece of a product (gemm.cc). The OpenMP build reads the OpenMP thread
  // count on every call, and gemm.cc sets it; the pthreads build is told here, once.
  openblas_set_num_threads(1);
#endif
}

Strided makeStrided(int nv, int nd, const double* shape, const double* const* strides, const double* offsets) {
  Strided s;
  s.nv = nv;
  s.size = 1;
  for (int d = 0; d < nd; d++) s.size *= static_cast<int64_t>(shape[d]);
  for (int v = 0; v < nv; v++) s.offset[v] = static_cast<int64_t>(offsets[v]);
  if (s.size == 0) {  // nothing to visit
    s.nd = 1;
    s.shape[0] = 0;
    for (int v = 0; v < nv; v++) s.stride[v][0] = 0;
    return s;
  }
  // Drop size-1 axes and fuse an axis into the one outside it when every view steps through both as one.
  int k = 0;
  for (int d = 0; d < nd; d++) {
    const int64_t len = static_cast<int64_t>(shape[d]);
    if (len == 1) continue;
    bool fuse = k > 0;
    for (int v = 0; v < nv && fuse; v++) {
      fuse = s.stride[v][k - 1] == static_cast<int64_t>(strides[v][d]) * len;
    }
    if (fuse) {
      s.shape[k - 1] *= len;
      for (int v = 0; v < nv; v++) s.stride[v][k - 1] = static_cast<int64_t>(strides[v][d]);
      continue;
    }
    if (k == kMaxDims) throw std::invalid_argument("view has too many axes");
    s.shape[k] = len;
    for (int v = 0; v < nv; v++) s.stride[v][k] = static_cast<int64_t>(strides[v][d]);
    k++;
  }
  if (k == 0) {  // a single element
    s.shape[0] = 1;
    for (int v = 0; v < nv; v++) s.stride[v][0] = 0;
    k = 1;
  }
  s.nd = k;
  return s;
}

Rows makeRows(int nv, int nd, const double* shape, const double* const* strides, const double* offsets) {
  Rows r;
  if (nd == 0) throw std::invalid_argument("row-wise views need at least one axis");
  const double* leadStrides[kMaxViews] = {};
  for (int v = 0; v < nv; v++) leadStrides[v] = strides[v];
  r.lead = makeStrided(nv, nd - 1, shape, leadStrides, offsets);
  r.cols = static_cast<int64_t>(shape[nd - 1]);
  r.rows = r.lead.size;
  for (int v = 0; v < nv; v++) r.inner[v] = static_cast<int64_t>(strides[v][nd - 1]);
  return r;
}

}  // namespace peft
