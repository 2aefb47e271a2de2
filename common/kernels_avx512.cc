// AVX-512F kernels: a 16-lane vector is one 512-bit register.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "common/kernels_isa.h"

namespace moe::isa {
namespace {

struct V {
  __m512 v;
  static V Zero() { return {_mm512_setzero_ps()}; }
  static V Broadcast(float a) { return {_mm512_set1_ps(a)}; }
  static V Load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static void Store(float* p, const V& x) { _mm512_storeu_ps(p, x.v); }
  static V LoadBf16(const uint16_t* p) {
    const __m512i wide =
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return {_mm512_castsi512_ps(_mm512_slli_epi32(wide, 16))};
  }
  static V LoadF16(const uint16_t* p) {
    return {_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)))};
  }
  static V Fma(const V& a, const V& b, const V& c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
  static V Add(const V& a, const V& b) { return {_mm512_add_ps(a.v, b.v)}; }
  static V Sub(const V& a, const V& b) { return {_mm512_sub_ps(a.v, b.v)}; }
  static V Mul(const V& a, const V& b) { return {_mm512_mul_ps(a.v, b.v)}; }
  static V Div(const V& a, const V& b) { return {_mm512_div_ps(a.v, b.v)}; }
  static V Min(const V& a, const V& b) { return {_mm512_min_ps(a.v, b.v)}; }
  static V Max(const V& a, const V& b) { return {_mm512_max_ps(a.v, b.v)}; }
  static V Round(const V& a) {
    return {_mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
  }
  static V Pow2(const V& n) {
    const __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n.v), _mm512_set1_epi32(127));
    return {_mm512_castsi512_ps(_mm512_slli_epi32(e, 23))};
  }
  // 16 -> 8: lane j + lane j+8; 8 -> 4; 4 -> 2; 2 -> 1.
  static float Reduce(const V& x) {
    const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(x.v),
                                    _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x.v), 1)));
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    const __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
    return _mm_cvtss_f32(s1);
  }
};

#include "common/simd_kernels.h"

// 8 rows x 3 panels: 24 accumulator registers (of 32), 3 for weights, 1 for a broadcast;
// decode: 4 panels at once (4 chains cover the fused multiply-add latency; 4 streams from memory
// per thread read faster here than 8, which the hardware prefetcher tracks less well).
using Kernel = Entry<V, 8, 3, 4>;

}  // namespace

Kernels Avx512Kernels() {
  return KernelTable<Kernel, V>(Isa::kAvx512, "avx512");
}

}  // namespace moe::isa
