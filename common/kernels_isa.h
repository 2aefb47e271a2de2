// The per-instruction-set kernel entry points behind common/kernels.h.
#pragma once

#include <cstdint>

#include "common/dtype.h"

namespace moe::isa {

enum class Isa { kGeneric, kAvx2, kAvx512 };

// Panels [p0, p1) of a weight matrix in panels (panel p at w + p * ps elements; common/
// kernels.h) against x [T, blocks * Kb] (rows ldx apart): y + b * y_block gets block b's
// outputs n in [16 p0, min(16 p1, n_end)) at y[t * ldy + n].
using MatMulPanelsFn = void (*)(const float* x, int64_t T, int64_t ldx, const void* w,
                                DType dtype, int64_t ps, int64_t Kb, int blocks, int64_t p0,
                                int64_t p1, float* y, int64_t ldy, int64_t n_end, int64_t y_block);
using DotFn = float (*)(const float* a, const float* b, int64_t n);
using AxpyFn = void (*)(float a, const float* x, float* y, int64_t n);
using SiluMulFn = void (*)(float* gate, const float* up, int64_t n);

struct Kernels {
  Isa isa;
  const char* name;
  MatMulPanelsFn matmul_panels;
  int group_panels;         // panels a tile of several rows spans
  int decode_group_panels;  // panels a tile of one row spans
  DotFn dot;
  AxpyFn axpy;
  SiluMulFn silu_mul;
};

Kernels GenericKernels();
Kernels Avx2Kernels();
Kernels Avx512Kernels();

}  // namespace moe::isa
