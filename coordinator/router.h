// The Mixtral router: softmax over all E experts, keep the top K, renormalise by their sum.
// Index legend: T = tokens, E = experts, K = experts per token, D = hidden.
#pragma once

#include <vector>

#include "common/kernels.h"
#include "common/thread_pool.h"

namespace moe {

// Each token's K chosen experts, sorted by expert id (the order combine adds them in).
struct Routes {
  int k = 0;
  std::vector<int> expert;    // [T, K]
  std::vector<float> weight;  // [T, K], each row sums to ~1
  int tokens() const { return k ? static_cast<int>(expert.size()) / k : 0; }
};

// h [T, D], gate [E, D] -> routes. `logits` is scratch of [T, E].
void Route(const float* h, int T, const Matrix& gate, int K, ThreadPool& pool,
           std::vector<float>& logits, Routes* routes);

// Every token to expert 0 with weight 1: a dense MLP through the same path.
void RouteDense(int T, Routes* routes);

}  // namespace moe
