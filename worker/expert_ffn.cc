#include "worker/expert_ffn.h"

#include "common/check.h"

namespace moe {

void ExpertBlockPartials(const ExpertSlice& slice, int block_size, const float* x, int n,
                         float* partials, ExpertScratch& scratch, ThreadPool& pool) {
  const int64_t D = slice.w1.cols, Fs = slice.w1.rows;
  MOE_CHECK(Fs == int64_t{slice.block_end - slice.block_begin} * block_size, "slice width");
  if (n == 0) return;
  scratch.gate.resize(n * Fs);
  scratch.up.resize(n * Fs);
  MatMul(x, n, slice.w1, scratch.gate.data(), pool);  // [n, Fs]
  MatMul(x, n, slice.w3, scratch.up.data(), pool);    // [n, Fs]
  SiluMul(scratch.gate.data(), scratch.up.data(), n * Fs);
  for (int b = 0; b < slice.block_end - slice.block_begin; ++b) {
    const Matrix w2b = slice.w2.Columns(int64_t{b} * block_size, int64_t{b + 1} * block_size);
    MatMul(scratch.gate.data() + int64_t{b} * block_size, n, w2b, partials + b * n * D, pool,
           /*ldx=*/Fs);
  }
}

void SumBlocks(const float* partials, int blocks, int64_t n_times_d, float* y) {
  for (int64_t i = 0; i < n_times_d; ++i) y[i] = partials[i];
  for (int b = 1; b < blocks; ++b) {
    const float* p = partials + b * n_times_d;
    for (int64_t i = 0; i < n_times_d; ++i) y[i] += p[i];
  }
}

}  // namespace moe
