// AVX2 + FMA + F16C kernels: a 16-lane vector is two 256-bit registers.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "common/kernels_isa.h"

namespace moe::isa {
namespace {

struct V {
  __m256 lo, hi;  // lanes 0-7, 8-15
  static V Zero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
  static V Broadcast(float a) { return {_mm256_set1_ps(a), _mm256_set1_ps(a)}; }
  static V Load(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
  static void Store(float* p, const V& v) {
    _mm256_storeu_ps(p, v.lo);
    _mm256_storeu_ps(p + 8, v.hi);
  }
  static __m256 Bf16x8(const uint16_t* p) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }
  static V LoadBf16(const uint16_t* p) { return {Bf16x8(p), Bf16x8(p + 8)}; }
  static V LoadF16(const uint16_t* p) {
    return {_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
            _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8)))};
  }
  static V Fma(const V& a, const V& b, const V& c) {
    return {_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)};
  }
  // An operation on both halves.
  template <typename Op>
  static V Halves(const V& a, const V& b, Op op) {
    return {op(a.lo, b.lo), op(a.hi, b.hi)};
  }
  static V Add(const V& a, const V& b) {
    return Halves(a, b, [](__m256 x, __m256 y) { return _mm256_add_ps(x, y); });
  }
  static V Sub(const V& a, const V& b) {
    return Halves(a, b, [](__m256 x, __m256 y) { return _mm256_sub_ps(x, y); });
  }
  static V Mul(const V& a, const V& b) {
    return Halves(a, b, [](__m256 x, __m256 y) { return _mm256_mul_ps(x, y); });
  }
  static V Div(const V& a, const V& b) {
    return Halves(a, b, [](__m256 x, __m256 y) { return _mm256_div_ps(x, y); });
  }
  static V Min(const V& a, const V& b) {
    return Halves(a, b, [](__m256 x, __m256 y) { return _mm256_min_ps(x, y); });
  }
  static V Max(const V& a, const V& b) {
    return Halves(a, b, [](__m256 x, __m256 y) { return _mm256_max_ps(x, y); });
  }
  static V Round(const V& a) {
    return Halves(a, a, [](__m256 x, __m256) {
      return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    });
  }
  static V Pow2(const V& n) {
    return Halves(n, n, [](__m256 x, __m256) {
      const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(x), _mm256_set1_epi32(127));
      return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
    });
  }
  // 16 -> 8: lane j + lane j+8; 8 -> 4; 4 -> 2; 2 -> 1.
  static float Reduce(const V& v) {
    const __m256 s8 = _mm256_add_ps(v.lo, v.hi);
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    const __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
    return _mm_cvtss_f32(s1);
  }
};

#include "common/simd_kernels.h"

// 6 rows x 1 panel: 12 accumulator registers (of 16), 2 for weights, 1 for a broadcast;
// decode: 4 panels at once.
using Kernel = Entry<V, 6, 1, 4>;

}  // namespace

Kernels Avx2Kernels() {
  return KernelTable<Kernel, V>(Isa::kAvx2, "avx2");
}

}  // namespace moe::isa
