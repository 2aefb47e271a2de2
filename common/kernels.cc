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
  const int64_t K = w.cols;
  // Element k of row r is `step` elements after element k - 1.
  const int64_t first = w.panels() ? r / 16 * w.panel_stride + r % 16 : r * w.row_stride();
  const int64_t step = w.panels() ? 16 : 1;
  switch (w.dtype) {
    case DType::kF32: {
      const float* p = static_cast<const float*>(w.data) + first;
      for (int64_t k = 0; k < K; ++k) out[k] = p[k * step];
      break;
    }
    case DType::kBF16: {
      const uint16_t* p = static_cast<const uint16_t*>(w.data) + first;
      for (int64_t k = 0; k < K; ++k) out[k] = Bf16ToF32(p[k * step]);
      break;
    }
    case DType::kF16: {
      const uint16_t* p = static_cast<const uint16_t*>(w.data) + first;
      const float* table = F16Table();
      for (int64_t k = 0; k < K; ++k) out[k] = table[p[k * step]];
      break;
    }
  }
}

int64_t PanelElements(int64_t rows, int64_t cols) { return (rows + 15) / 16 * 16 * cols; }

void PackPanels(const void* src, DType dtype, int64_t ld, int64_t r0, int64_t r1, int64_t c0,
                int64_t c1, void* dst) {
  const int64_t size = DTypeSize(dtype), cols = c1 - c0;
  const auto* in = static_cast<const uint8_t*>(src);
  auto* out = static_cast<uint8_t*>(dst);
  std::memset(out, 0, PanelElements(r1 - r0, cols) * size);
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t i = r - r0;
    uint8_t* panel = out + (i / 16 * 16 * cols + i % 16) * size;
    const uint8_t* row = in + (r * ld + c0) * size;
    for (int64_t c = 0; c < cols; ++c) std::memcpy(panel + c * 16 * size, row + c * size, size);
  }
}

namespace {

// Panels [p0, p1) of one job: straight from a matrix in panels, or packed here first.
void RunPanels(const isa::Kernels& k, const MatMulJob& job, int64_t p0, int64_t p1) {
  const Matrix& w = *job.w;
  const int64_t K = w.cols, Kb = K / job.blocks, ldx = job.ldx < 0 ? K : job.ldx;
  const int64_t N = w.rows, y_block = job.T * N;
  if (w.panels()) {
    k.matmul_panels(job.x, job.T, ldx, w.data, w.dtype, w.panel_stride, Kb, job.blocks, p0, p1,
                    job.y, N, N, y_block);
    return;
  }
  thread_local std::vector<uint8_t> panel;
  panel.resize(16 * K * DTypeSize(w.dtype));
  for (int64_t p = p0; p < p1; ++p) {
    PackPanels(w.data, w.dtype, w.row_stride(), 16 * p, std::min(N, 16 * (p + 1)), 0, K,
               panel.data());
    k.matmul_panels(job.x, job.T, ldx, panel.data(), w.dtype, 16 * K, Kb, job.blocks, 0, 1,
                    job.y + 16 * p, N, N - 16 * p, y_block);
  }
}

}  // namespace

void MatMul(const float* x, int64_t T, const Matrix& w, float* y, ThreadPool& pool,
            int64_t ldx) {
  const MatMulJob job{x, T, &w, y, ldx};
  MatMulMany(&job, 1, pool);
}

void MatMulMany(const MatMulJob* jobs, int count, ThreadPool& pool) {
  // The panels of all jobs laid end to end; threads take ranges of them, so each weight byte
  // is read by one thread, once per call. Ranges start at multiples of the kernel's group of
  // panels, so few groups are cut short.
  std::vector<int64_t> start(count + 1, 0);
  int64_t work = 0;
  bool one_row = true;
  for (int j = 0; j < count; ++j) {
    start[j + 1] = start[j] + (jobs[j].T > 0 ? (jobs[j].w->rows + 15) / 16 : 0);
    work += jobs[j].T * jobs[j].w->rows * jobs[j].w->cols;
    one_row = one_row && jobs[j].T <= 1;
  }
  const isa::Kernels& k = Active();
  const int grain = one_row ? k.decode_group_panels : k.group_panels;
  // Several rows: compute-bound chunks, many of them, so threads end together. One row:
  // streaming from memory, long stretches.
  const int chunks_per_thread = one_row ? 4 : 16;
  pool.ParallelFor(
      start[count],
      [&](int64_t q0, int64_t q1) {
        for (int j = 0; j < count; ++j) {
          const int64_t p0 = std::max(q0, start[j]) - start[j];
          const int64_t p1 = std::min(q1, start[j + 1]) - start[j];
          if (p0 < p1) RunPanels(k, jobs[j], p0, p1);
        }
      },
      grain, work, chunks_per_thread);
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

void SiluMul(float* gate, const float* up, int64_t n) { Active().silu_mul(gate, up, n); }

}  // namespace moe

namespace moe {

Matrix Matrix::Rows(int64_t r0, int64_t r1) const {
  Matrix m = *this;
  m.rows = r1 - r0;
  if (panels()) {
    MOE_CHECK(r0 % 16 == 0, "a row slice of a matrix in panels starts at a multiple of 16");
    m.data = static_cast<const uint8_t*>(data) + r0 / 16 * panel_stride * DTypeSize(dtype);
    return m;
  }
  m.data = static_cast<const uint8_t*>(data) + r0 * row_stride() * DTypeSize(dtype);
  m.stride = row_stride();
  return m;
}

Matrix Matrix::Columns(int64_t c0, int64_t c1) const {
  Matrix m = *this;
  m.cols = c1 - c0;
  if (panels()) {
    m.data = static_cast<const uint8_t*>(data) + c0 * 16 * DTypeSize(dtype);
    return m;
  }
  m.data = static_cast<const uint8_t*>(data) + c0 * DTypeSize(dtype);
  m.stride = row_stride();
  return m;
}

}  // namespace moe
