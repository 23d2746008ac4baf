// gather and its adjoint scatterAdd along the middle axis of contiguous [outer, n, inner].
#include <cstring>

#include "kernels.h"

namespace peft {
namespace {

// Integer adds wrap like an Int32Array store of the (exact) sum does; float adds round once, like the reference.
inline void addInto(float& d, float s) { d += s; }
inline void addInto(int32_t& d, int32_t s) {
  d = static_cast<int32_t>(static_cast<uint32_t>(d) + static_cast<uint32_t>(s));
}

}  // namespace

template <class T>
void gatherKernel(const T* src, int64_t outer, int64_t n, int64_t inner, const int32_t* ids, int64_t count, T* out) {
  parallelFor(outer * count, std::max<int64_t>(1, kGrainCheap / std::max<int64_t>(inner, 1)), [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; t++) {
      const int64_t o = t / count, j = t % count;
      std::memcpy(out + t * inner, src + (o * n + ids[j]) * inner, static_cast<size_t>(inner) * sizeof(T));
    }
  });
}

template <class T>
void scatterAddKernel(const T* src, int64_t outer, int64_t n, int64_t inner, const int32_t* ids, int64_t count,
                      T* out) {
  // Repeated ids add into the same row, so tasks split the (outer, inner) plane, never the ids: every output element
  // receives its terms in id order from one thread, deterministically and as the reference adds them.
  const int64_t block = std::max<int64_t>(64, std::min<int64_t>(inner, 4096)), blocks = (inner + block - 1) / block;
  const int64_t grain = std::max<int64_t>(1, kGrainCheap / std::max<int64_t>(count * block, 1));
  parallelFor(outer * blocks, grain, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; t++) {
      const int64_t o = t / blocks, i0 = (t % blocks) * block, bl = std::min(block, inner - i0);
      for (int64_t j = 0; j < count; j++) {
        const T* s = src + (o * count + j) * inner + i0;
        T* d = out + (o * n + ids[j]) * inner + i0;
        for (int64_t i = 0; i < bl; i++) addInto(d[i], s[i]);
      }
    }
  });
}

template void gatherKernel(const float*, int64_t, int64_t, int64_t, const int32_t*, int64_t, float*);
template void gatherKernel(const int32_t*, int64_t, int64_t, int64_t, const int32_t*, int64_t, int32_t*);
template void scatterAddKernel(const float*, int64_t, int64_t, int64_t, const int32_t*, int64_t, float*);
template void scatterAddKernel(const int32_t*, int64_t, int64_t, int64_t, const int32_t*, int64_t, int32_t*);

}  // namespace peft
