#include "common/kernels.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "common/check.h"

namespace moe {
namespace {

constexpr int kLanes = 16;  // accumulation lanes of every dot product
constexpr int kRowTile = 4;  // activation rows sharing one pass over a weight row

// Exact f16 -> f32 through a table, built once.
const float* F16Table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t i = 0; i < 65536; ++i) t[i] = F16ToF32(static_cast<uint16_t>(i));
    return t;
  }();
  return table.data();
}

struct F32W {
  const float* p;
  float operator[](int64_t k) const { return p[k]; }
};
struct Bf16W {
  const uint16_t* p;
  float operator[](int64_t k) const { return Bf16ToF32(p[k]); }
};
struct F16W {
  const uint16_t* p;
  const float* table;
  float operator[](int64_t k) const { return table[p[k]]; }
};

// Reduces the lanes in a fixed tree: 16 -> 8 -> 4 -> 2 -> 1.
inline float ReduceLanes(float* acc) {
  for (int width = kLanes / 2; width >= 1; width /= 2)
    for (int j = 0; j < width; ++j) acc[j] += acc[j + width];
  return acc[0];
}

// R rows of x against one weight row. Each row's lanes see exactly the sequence of products
// that Dot() would, so tiling does not change any result.
template <int R, typename W>
inline void DotTile(const float* const* x, W w, int64_t K, float* out) {
  float acc[R][kLanes] = {};
  const int64_t k_main = K / kLanes * kLanes;
  for (int64_t k = 0; k < k_main; k += kLanes) {
    float wv[kLanes];
    for (int j = 0; j < kLanes; ++j) wv[j] = w[k + j];
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < kLanes; ++j) acc[r][j] += x[r][k + j] * wv[j];
  }
  for (int64_t k = k_main; k < K; ++k) {
    const float wk = w[k];
    for (int r = 0; r < R; ++r) acc[r][k - k_main] += x[r][k] * wk;
  }
  for (int r = 0; r < R; ++r) out[r] = ReduceLanes(acc[r]);
}

template <typename W>
void MatMulRows(const float* x, int64_t T, int64_t ldx, W wrow0, int64_t row_stride, int64_t K,
                int64_t n0, int64_t n1, int64_t N, float* y) {
  for (int64_t n = n0; n < n1; ++n) {
    W w = wrow0;
    w.p += n * row_stride;
    int64_t t = 0;
    for (; t + kRowTile <= T; t += kRowTile) {
      const float* rows[kRowTile];
      float out[kRowTile];
      for (int r = 0; r < kRowTile; ++r) rows[r] = x + (t + r) * ldx;
      DotTile<kRowTile>(rows, w, K, out);
      for (int r = 0; r < kRowTile; ++r) y[(t + r) * N + n] = out[r];
    }
    for (; t < T; ++t) {
      const float* row = x + t * ldx;
      DotTile<1>(&row, w, K, &y[t * N + n]);
    }
  }
}

}  // namespace

float Dot(const float* a, const float* b, int64_t n) {
  float out;
  DotTile<1>(&a, F32W{b}, n, &out);
  return out;
}

void WidenRow(const Matrix& w, int64_t r, float* out) {
  const int64_t K = w.cols, ld = w.row_stride();
  switch (w.dtype) {
    case DType::kF32:
      std::memcpy(out, static_cast<const float*>(w.data) + r * ld, K * sizeof(float));
      break;
    case DType::kBF16: {
      const uint16_t* p = static_cast<const uint16_t*>(w.data) + r * ld;
      for (int64_t k = 0; k < K; ++k) out[k] = Bf16ToF32(p[k]);
      break;
    }
    case DType::kF16: {
      const uint16_t* p = static_cast<const uint16_t*>(w.data) + r * ld;
      const float* table = F16Table();
      for (int64_t k = 0; k < K; ++k) out[k] = table[p[k]];
      break;
    }
  }
}

void MatMul(const float* x, int64_t T, const Matrix& w, float* y, ThreadPool& pool,
            int64_t ldx) {
  const int64_t N = w.rows, K = w.cols, ldw = w.row_stride();
  if (ldx < 0) ldx = K;
  if (T == 0 || N == 0) return;
  // Each thread takes a range of weight rows, so every weight byte is read once per call.
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(K, 1));
  pool.ParallelFor(
      N,
      [&](int64_t n0, int64_t n1) {
        switch (w.dtype) {
          case DType::kF32:
            MatMulRows(x, T, ldx, F32W{static_cast<const float*>(w.data)}, ldw, K, n0, n1, N, y);
            break;
          case DType::kBF16:
            MatMulRows(x, T, ldx, Bf16W{static_cast<const uint16_t*>(w.data)}, ldw, K, n0, n1, N,
                       y);
            break;
          case DType::kF16:
            MatMulRows(x, T, ldx, F16W{static_cast<const uint16_t*>(w.data), F16Table()}, ldw, K,
                       n0, n1, N, y);
            break;
        }
      },
      grain);
}

void RmsNorm(const float* x, int64_t T, int64_t D, const Matrix& weight, float eps, float* y) {
  MOE_CHECK(weight.rows * weight.cols == D, "RmsNorm weight size");
  std::vector<float> g(D);
  WidenRow(Matrix{weight.data, weight.dtype, 1, D}, 0, g.data());
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x + t * D;
    const float mean_sq = Dot(xr, xr, D) / static_cast<float>(D);
    const float inv = 1.0f / std::sqrt(mean_sq + eps);
    for (int64_t d = 0; d < D; ++d) y[t * D + d] = g[d] * (xr[d] * inv);
  }
}

void Softmax(float* x, int64_t n) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  for (int64_t i = 0; i < n; ++i) x[i] /= sum;
}

void SiluMul(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

}  // namespace moe

namespace moe {

Matrix Matrix::Rows(int64_t r0, int64_t r1) const {
  Matrix m = *this;
  m.data = static_cast<const uint8_t*>(data) + r0 * row_stride() * DTypeSize(dtype);
  m.rows = r1 - r0;
  m.stride = row_stride();
  return m;
}

Matrix Matrix::Columns(int64_t c0, int64_t c1) const {
  Matrix m = *this;
  m.data = static_cast<const uint8_t*>(data) + c0 * DTypeSize(dtype);
  m.cols = c1 - c0;
  m.stride = row_stride();
  return m;
}

}  // namespace moe
