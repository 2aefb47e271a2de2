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
  static float Reduce(V v) {
    for (int width = 8; width >= 1; width /= 2)
      for (int j = 0; j < width; ++j) v.l[j] += v.l[j + width];
    return v.l[0];
  }
};

#include "common/simd_matmul.h"

// Portable: small tiles.
using Kernel = Entry<V, 2, 2, 2>;

}  // namespace

Kernels GenericKernels() {
  return {Isa::kGeneric, "generic", Kernel::MatMulPanels, DotT<V>, AxpyT<V>};
}

}  // namespace moe::isa
