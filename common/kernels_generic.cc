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

void MatMulRows(const float* x, int64_t T, int64_t ldx, const void* w, DType dtype, int64_t ldw,
                int64_t K, int64_t n0, int64_t n1, float* y, int64_t N) {
  switch (dtype) {
    case DType::kF32: return MatMulRowsT<V, WF32, 2, 2>(x, T, ldx, w, ldw, K, n0, n1, y, N);
    case DType::kBF16: return MatMulRowsT<V, WBf16, 2, 2>(x, T, ldx, w, ldw, K, n0, n1, y, N);
    case DType::kF16: return MatMulRowsT<V, WF16, 2, 2>(x, T, ldx, w, ldw, K, n0, n1, y, N);
  }
}

void MatMulBlocked(const float* x, int64_t T, int64_t ldx, const void* w, DType dtype,
                   int64_t ldw, int64_t Kb, int blocks, int64_t n0, int64_t n1, float* y,
                   int64_t N, int64_t y_block) {
  switch (dtype) {
    case DType::kF32:
      return MatMulRowsBlockedT<V, WF32, 2, 2>(x, T, ldx, w, ldw, Kb, blocks, n0, n1, y, N, y_block);
    case DType::kBF16:
      return MatMulRowsBlockedT<V, WBf16, 2, 2>(x, T, ldx, w, ldw, Kb, blocks, n0, n1, y, N, y_block);
    case DType::kF16:
      return MatMulRowsBlockedT<V, WF16, 2, 2>(x, T, ldx, w, ldw, Kb, blocks, n0, n1, y, N, y_block);
  }
}

}  // namespace

Kernels GenericKernels() { return {Isa::kGeneric, "generic", MatMulRows, MatMulBlocked, DotT<V>, AxpyT<V>}; }

}  // namespace moe::isa
