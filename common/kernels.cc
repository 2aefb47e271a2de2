#include "common/kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/check.h"
#include "common/kernels_isa.h"

namespace moe {
namespace {

// Exact f16 -> f32 through a table, built once.
const float* F16Table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t i = 0; i < 65536; ++i) t[i] = F16ToF32(static_cast<uint16_t>(i));
    return t;
  }();
  return table.data();
}

isa::Kernels Best() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return isa::Avx512Kernels();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("f16c"))
    return isa::Avx2Kernels();
  return isa::GenericKernels();
}

isa::Kernels& Active() {
  static isa::Kernels kernels = Best();
  return kernels;
}

}  // namespace

const char* KernelIsa() { return Active().name; }

Status SetKernelIsa(const std::string& name) {
  __builtin_cpu_init();
  if (name == "generic") {
    Active() = isa::GenericKernels();
  } else if (name == "avx2") {
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") ||
        !__builtin_cpu_supports("f16c"))
      return InvalidArgument("this CPU has no AVX2/FMA/F16C");
    Active() = isa::Avx2Kernels();
  } else if (name == "avx512") {
    if (!__builtin_cpu_supports("avx512f")) return InvalidArgument("this CPU has no AVX-512F");
    Active() = isa::Avx512Kernels();
  } else if (name == "auto" || name.empty()) {
    Active() = Best();
  } else {
    return InvalidArgument("kernel ISA '" + name + "' is not one of auto, generic, avx2, avx512");
  }
  return Status::Ok();
}

float Dot(const float* a, const float* b, int64_t n) { return Active().dot(a, b, n); }

void Axpy(float a, const float* x, float* y, int64_t n) { Active().axpy(a, x, y, n); }

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
  const int64_t N = w.rows, K = w.cols;
  if (ldx < 0) ldx = K;
  if (T == 0 || N == 0) return;
  const isa::Kernels& k = Active();
  // Threads take ranges of weight rows (multiples of 16, the panel), so each weight byte is read
  // by one thread, once per call.
  pool.ParallelFor(
      N,
      [&](int64_t n0, int64_t n1) {
        k.matmul_rows(x, T, ldx, w.data, w.dtype, w.row_stride(), K, n0, n1, y, N);
      },
      16, T * N * K);
}

void MatMulMany(const MatMulJob* jobs, int count, ThreadPool& pool) {
  // Weight rows of all jobs laid end to end; each job's rows start at a multiple of 16.
  std::vector<int64_t> start(count + 1, 0);
  int64_t work = 0;
  for (int j = 0; j < count; ++j) {
    start[j + 1] = start[j] + (jobs[j].w->rows + 15) / 16 * 16;
    work += jobs[j].T * jobs[j].w->rows * jobs[j].w->cols;
  }
  const isa::Kernels& k = Active();
  pool.ParallelFor(
      start[count],
      [&](int64_t r0, int64_t r1) {
        for (int j = 0; j < count; ++j) {
          const MatMulJob& job = jobs[j];
          const int64_t n0 = std::max(r0, start[j]) - start[j];
          const int64_t n1 = std::min({r1, start[j + 1], start[j] + job.w->rows}) - start[j];
          if (n0 >= n1 || job.T == 0) continue;
          const int64_t K = job.w->cols, ldx = job.ldx < 0 ? K : job.ldx;
          if (job.blocks > 1)
            k.matmul_blocked(job.x, job.T, ldx, job.w->data, job.w->dtype, job.w->row_stride(),
                             K / job.blocks, job.blocks, n0, n1, job.y, job.w->rows,
                             job.T * job.w->rows);
          else
            k.matmul_rows(job.x, job.T, ldx, job.w->data, job.w->dtype, job.w->row_stride(), K,
                          n0, n1, job.y, job.w->rows);
        }
      },
      16, work);
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
