// The expert feed-forward network, y = w2(silu(w1 x) * w3 x), computed per ffn block.
// Index legend: n = rows routed to the expert, D = hidden, F = ffn, Fb = F / blocks.
//
// The ffn dimension is cut into a fixed number of blocks (a function of F alone). An expert's
// output is the sum of its blocks' partial outputs, added in block order. A worker holding a
// whole expert adds them itself; a worker holding a slice returns its blocks' partials and the
// coordinator adds them. Either way the additions happen in the same order, so the numbers are
// identical however experts are spread.
#pragma once

#include <vector>

#include "common/kernels.h"
#include "common/model_config.h"
#include "common/placement.h"
#include "common/thread_pool.h"

namespace moe {

// The weights of an assignment: blocks [block_begin, block_end) of one expert (the dense MLP is
// expert 0).
struct ExpertSlice : ExpertAssignment {
  Matrix w1;  // [Fs, D] gate projection, Fs = (block_end - block_begin) * Fb
  Matrix w3;  // [Fs, D] up projection
  Matrix w2;  // [D, Fs] down projection (a column slice of [D, F])
};

// Scratch reused across calls, so steady-state steps do not allocate.
struct ExpertScratch {
  std::vector<float> gate, up;  // per task [n, Fs], laid end to end
  std::vector<MatMulJob> jobs;
};

// One slice's work: its rows x [n, D] and where its block partials go [blocks, n, D].
struct ExpertTask {
  const ExpertSlice* slice;
  const float* x;
  int n;
  float* partials;
};

// partials[(b - block_begin), n, D] = the output of block b over the rows, for every task:
// the gate/up matmuls of all tasks in one parallel pass, then all down matmuls in another.
void ExpertBlockPartials(const std::vector<ExpertTask>& tasks, int block_size,
                         ExpertScratch& scratch, ThreadPool& pool);

// y[n, D] = partials[0] + partials[1] + ... in block order.
void SumBlocks(const float* partials, int blocks, int64_t n_times_d, float* y);

}  // namespace moe
