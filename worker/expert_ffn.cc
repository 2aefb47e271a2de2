#include "worker/expert_ffn.h"

#include "common/check.h"

namespace moe {

void ExpertBlockPartials(const std::vector<ExpertTask>& tasks, int block_size,
                         ExpertScratch& scratch, ThreadPool& pool) {
  std::vector<int64_t> offset(tasks.size() + 1, 0);  // into gate/up, per task
  for (size_t i = 0; i < tasks.size(); ++i) {
    const ExpertSlice& s = *tasks[i].slice;
    MOE_CHECK(s.w1.rows == int64_t{s.block_end - s.block_begin} * block_size, "slice width");
    offset[i + 1] = offset[i] + int64_t{tasks[i].n} * s.w1.rows;
  }
  scratch.gate.resize(offset.back());
  scratch.up.resize(offset.back());
  // gate = x w1, up = x w3 for every task                                [n, Fs] each
  scratch.jobs.clear();
  for (size_t i = 0; i < tasks.size(); ++i) {
    const ExpertTask& t = tasks[i];
    if (t.n == 0) continue;
    scratch.jobs.push_back({t.x, t.n, &t.slice->w1, &scratch.gate[offset[i]]});
    scratch.jobs.push_back({t.x, t.n, &t.slice->w3, &scratch.up[offset[i]]});
  }
  MatMulMany(scratch.jobs.data(), static_cast<int>(scratch.jobs.size()), pool);
  // act = silu(gate) * up, element by element (split across threads: same bits)
  pool.ParallelFor(
      offset.back(),
      [&](int64_t i0, int64_t i1) { SiluMul(&scratch.gate[i0], &scratch.up[i0], i1 - i0); },
      4096, offset.back() * 16);
  // partial[b] = act[:, block b] w2[:, block b] for every task and block [blocks, n, D] each
  scratch.jobs.clear();
  for (size_t i = 0; i < tasks.size(); ++i) {
    const ExpertTask& t = tasks[i];
    if (t.n > 0)
      scratch.jobs.push_back({&scratch.gate[offset[i]], t.n, &t.slice->w2, t.partials, -1,
                              t.slice->block_end - t.slice->block_begin});
  }
  MatMulMany(scratch.jobs.data(), static_cast<int>(scratch.jobs.size()), pool);
}

void SumBlocks(const float* partials, int blocks, int64_t n_times_d, float* y) {
  for (int64_t i = 0; i < n_times_d; ++i) y[i] = partials[i];
  for (int b = 1; b < blocks; ++b) {
    const float* p = partials + b * n_times_d;
    for (int64_t i = 0; i < n_times_d; ++i) y[i] += p[i];
  }
}

}  // namespace moe
