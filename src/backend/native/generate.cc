// Kernels that write values without reading storages: fill, arange and the counter-based random numbers.
#include <cmath>

#include "kernels.h"

namespace peft {
namespace {

// The integer recipe of src/backend/js/random.ts, in uint32 arithmetic so that every seed gives the same bits.
inline uint32_t fmix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

inline double uniformAt(uint32_t seed, int64_t index) {
  const uint32_t lo = static_cast<uint32_t>(static_cast<uint64_t>(index));
  const uint32_t hi = static_cast<uint32_t>(index >> 32);  // ⌊index / 2³²⌋ mod 2³² (arithmetic shift)
  const uint32_t h = fmix32(lo ^ fmix32((hi ^ seed) + 0x9e3779b9u));
  return (h >> 8) / 16777216.0;
}

inline double normalAt(uint32_t seed, int64_t index) {
  const double u1 = uniformAt(seed, 2 * index), u2 = uniformAt(seed, 2 * index + 1);
  return std::sqrt(-2 * std::log(1 - u1)) * std::cos(2 * M_PI * u2);
}

}  // namespace

template <class T>
void fillKernel(T* out, int64_t n, double value) {
  T v;
  store(&v, value);
  parallelFor(n, kGrainCheap * 4, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) out[i] = v;
  });
}

template <class T>
void arangeKernel(T* out, int64_t n, double start, double step) {
  parallelFor(n, kGrainCheap, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) store(out + i, start + static_cast<double>(i) * step);
  });
}

template <class T>
void randomKernel(T* out, int64_t n, RandomKind kind, double a, double b, uint32_t seed, int64_t counter) {
  parallelFor(n, kGrainMath, [&](int64_t lo, int64_t hi) {
    switch (kind) {
      case RandomKind::uniform:
        for (int64_t i = lo; i < hi; i++) store(out + i, a + (b - a) * uniformAt(seed, counter + i));
        break;
      case RandomKind::normal:
        for (int64_t i = lo; i < hi; i++) store(out + i, a + b * normalAt(seed, counter + i));
        break;
      case RandomKind::bernoulli:
        for (int64_t i = lo; i < hi; i++) store(out + i, uniformAt(seed, counter + i) < a ? b : 0.0);
        break;
      case RandomKind::count:
        break;
    }
  });
}

template void fillKernel(float*, int64_t, double);
template void fillKernel(int32_t*, int64_t, double);
template void arangeKernel(float*, int64_t, double, double);
template void arangeKernel(int32_t*, int64_t, double, double);
template void randomKernel(float*, int64_t, RandomKind, double, double, uint32_t, int64_t);
template void randomKernel(int32_t*, int64_t, RandomKind, double, double, uint32_t, int64_t);

}  // namespace peft
