// The per-instruction-set kernel entry points behind common/kernels.h.
#pragma once

#include <cstdint>

#include "common/dtype.h"

namespace moe::isa {

enum class Isa { kGeneric, kAvx2, kAvx512 };

// y[t, n] for t < T, n in [n0, n1): x [T, K] (rows ldx apart) . W[n, :] (rows ldw apart).
using MatMulRowsFn = void (*)(const float* x, int64_t T, int64_t ldx, const void* w, DType dtype,
                              int64_t ldw, int64_t K, int64_t n0, int64_t n1, float* y, int64_t N);
// The same over `blocks` column blocks of Kb columns: y + b * y_block gets block b.
using MatMulBlockedFn = void (*)(const float* x, int64_t T, int64_t ldx, const void* w,
                                 DType dtype, int64_t ldw, int64_t Kb, int blocks, int64_t n0,
                                 int64_t n1, float* y, int64_t N, int64_t y_block);
using DotFn = float (*)(const float* a, const float* b, int64_t n);
using AxpyFn = void (*)(float a, const float* x, float* y, int64_t n);

struct Kernels {
  Isa isa;
  const char* name;
  MatMulRowsFn matmul_rows;
  MatMulBlockedFn matmul_blocked;
  DotFn dot;
  AxpyFn axpy;
};

Kernels GenericKernels();
Kernels Avx2Kernels();
Kernels Avx512Kernels();

}  // namespace moe::isa
