// CPU kernels. Index legend: T = tokens (rows), K = input width, N = output width, D = hidden.
//
// Determinism: every output element of MatMul is one chain of fused multiply-adds along K in
// order, acc = fma(x[k], w[k], acc) from 0 (common/simd_matmul.h), whatever T is, however rows
// are tiled or threads split the work, and whichever instruction set runs it. So a token's
// numbers never depend on which other tokens share its batch or on the CPU.
#pragma once

#include <cstdint>

#include <string>

#include "common/dtype.h"
#include "common/status.h"
#include "common/thread_pool.h"

namespace moe {

// A weight matrix [rows, cols] in its checkpoint dtype; y = W x has `rows` outputs. Two layouts:
// - row-major (panel_stride 0): element (r, c) at r * row_stride() + c; `stride` (0 = cols)
//   lets a matrix be a column slice of a wider one;
// - panels (panel_stride > 0), what MatMul reads fastest: rows in groups of 16, each group
//   stored column by column, element (r, c) at (r / 16) * panel_stride + 16 c + r % 16, the
//   last group padded with zero rows. A column slice keeps the panel stride.
// MatMul gives the same bits for both: it packs a row-major matrix a panel at a time.
struct Matrix {
  const void* data = nullptr;
  DType dtype = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t stride = 0;
  int64_t panel_stride = 0;
  bool panels() const { return panel_stride > 0; }
  int64_t row_stride() const { return stride ? stride : cols; }
  int64_t bytes() const { return rows * cols * DTypeSize(dtype); }
  Matrix Rows(int64_t r0, int64_t r1) const;     // rows [r0, r1); in panels r0 % 16 == 0
  Matrix Columns(int64_t c0, int64_t c1) const;  // columns [c0, c1)
};

// Elements of a rows x cols matrix in panels (rows rounded up to 16).
int64_t PanelElements(int64_t rows, int64_t cols);
// Writes rows [r0, r1) and columns [c0, c1) of the row-major `src` (rows ld elements apart) in
// panels to dst (PanelElements(r1 - r0, c1 - c0) elements of the same dtype).
void PackPanels(const void* src, DType dtype, int64_t ld, int64_t r0, int64_t r1, int64_t c0,
                int64_t c1, void* dst);

// y[T, N] = x[T, K] · W[N, K]ᵀ, with N = w.rows, K = w.cols; x rows are ldx apart (-1: K).
void MatMul(const float* x, int64_t T, const Matrix& w, float* y, ThreadPool& pool,
            int64_t ldx = -1);

// Several matmuls in one parallel pass (one wake-up of the thread pool instead of one each).
struct MatMulJob {
  const float* x;      // [T, K], rows ldx apart (-1: K)
  int64_t T;
  const Matrix* w;     // [N, K]
  float* y;            // [T, N]; with blocks > 1: [blocks, T, N]
  int64_t ldx = -1;
  int blocks = 1;      // > 1: y[b] = x[:, block b] W[:, block b]^T over K / blocks columns each
};
void MatMulMany(const MatMulJob* jobs, int count, ThreadPool& pool);

// The f32 dot product in the fixed order used by every kernel.
float Dot(const float* a, const float* b, int64_t n);

// y[i] = fma(a, x[i], y[i]).
void Axpy(float a, const float* x, float* y, int64_t n);

// The instruction set the kernels use: the best this CPU has, unless set. Every choice gives
// the same bits; "generic" is the portable reference.
const char* KernelIsa();
Status SetKernelIsa(const std::string& name);  // auto, generic, avx2, avx512

// Row `r` of a weight matrix, widened to f32: out[K].
void WidenRow(const Matrix& w, int64_t r, float* out);

// y[T, D] = x / sqrt(mean(x^2) + eps) * weight, per row; weight is a [D] vector.
void RmsNorm(const float* x, int64_t T, int64_t D, const Matrix& weight, float eps, float* y);

// In place softmax over n values (max-subtracted, f32).
void Softmax(float* x, int64_t n);

// gate[i] = silu(gate[i]) * up[i], i < n, with an exp of our own (common/simd_activation.h):
// the same bits on every ISA.
void SiluMul(float* gate, const float* up, int64_t n);

}  // namespace moe
