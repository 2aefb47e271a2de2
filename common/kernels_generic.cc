// Portable kernels: 16 scalar lanes with std::fma, the reference for the fixed order.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/kernels_isa.h"

namespace moe::isa {
namespace {

struct V {
  float l[16];
  static V Zero() { return V{}; }
  static V Broadcast(float a) {
    V v;
    for (float& x : v.l) x = a;
    return v;
  }
  static V Load(const float* p) {
    V v;
    std::memcpy(v.l, p, sizeof(v.l));
    return v;
  }
  static void Store(float* p, const V& v) { std::memcpy(p, v.l, sizeof(v.l)); }
  static V LoadBf16(const uint16_t* p) {
    V v;
    for (int j = 0; j < 16; ++j) v.l[j] = Bf16ToF32(p[j]);
    return v;
  }
  static V LoadF16(const uint16_t* p) {
    V v;
    for (int j = 0; j < 16; ++j) v.l[j] = F16ToF32(p[j]);
    return v;
  }
  static V Fma(const V& a, const V& b, const V& c) {
    V v;
    for (int j = 0; j < 16; ++j) v.l[j] = std::fma(a.l[j], b.l[j], c.l[j]);
    return v;
  }
  // An operation lane by lane.
  template <typename Op>
  static V Lanes(const V& a, const V& b, Op op) {
    V v;
    for (int j = 0; j < 16; ++j) v.l[j] = op(a.l[j], b.l[j]);
    return v;
  }
  static V Add(const V& a, const V& b) {
    return Lanes(a, b, [](float x, float y) { return x + y; });
  }
  static V Sub(const V& a, const V& b) {
    return Lanes(a, b, [](float x, float y) { return x - y; });
  }
  static V Mul(const V& a, const V& b) {
    return Lanes(a, b, [](float x, float y) { return x * y; });
  }
  static V Div(const V& a, const V& b) {
    return Lanes(a, b, [](float x, float y) { return x / y; });
  }
  // As the x86 instructions: the second operand unless the first is smaller (or larger).
  static V Min(const V& a, const V& b) {
    return Lanes(a, b, [](float x, float y) { return x < y ? x : y; });
  }
  static V Max(const V& a, const V& b) {
    return Lanes(a, b, [](float x, float y) { return x > y ? x : y; });
  }
  static V Round(const V& a) {
    return Lanes(a, a, [](float x, float) { return std::nearbyint(x); });
  }
  static V Pow2(const V& n) {
    return Lanes(n, n, [](float e, float) {
      const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(e) + 127) << 23;
      float v;
      std::memcpy(&v, &bits, 4);
      return v;
    });
  }
  static float Reduce(V v) {
    for (int width = 8; width >= 1; width /= 2)
      for (int j = 0; j < width; ++j) v.l[j] += v.l[j + width];
    return v.l[0];
  }
};

#include "common/simd_kernels.h"

// Portable: small tiles.
using Kernel = Entry<V, 2, 2, 2>;

}  // namespace

Kernels GenericKernels() {
  return KernelTable<Kernel, V>(Isa::kGeneric, "generic");
}

}  // namespace moe::isa
