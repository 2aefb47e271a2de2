#include "coordinator/router.h"

#include <algorithm>
#include <numeric>

namespace moe {

void Route(const float* h, int T, const Matrix& gate, int K, ThreadPool& pool,
           std::vector<float>& logits, Routes* routes) {
  const int E = static_cast<int>(gate.rows);
  logits.resize(int64_t{T} * E);
  MatMul(h, T, gate, logits.data(), pool);  // [T, E]
  routes->k = K;
  routes->expert.resize(int64_t{T} * K);
  routes->weight.resize(int64_t{T} * K);
  std::vector<int> order(E);
  for (int t = 0; t < T; ++t) {
    float* p = &logits[int64_t{t} * E];
    Softmax(p, E);
    // Top K by probability; ties go to the lower expert id.
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + K, order.end(),
                      [p](int a, int b) { return p[a] != p[b] ? p[a] > p[b] : a < b; });
    float sum = 0;
    for (int j = 0; j < K; ++j) sum += p[order[j]];  // in descending order, as transformers does
    std::sort(order.begin(), order.begin() + K);
    for (int j = 0; j < K; ++j) {
      routes->expert[int64_t{t} * K + j] = order[j];
      routes->weight[int64_t{t} * K + j] = p[order[j]] / sum;
    }
  }
}

void RouteDense(int T, Routes* routes) {
  routes->k = 1;
  routes->expert.assign(T, 0);
  routes->weight.assign(T, 1.0f);
}

}  // namespace moe
