#include "worker/local_expert_backend.h"

#include <algorithm>

#include "common/check.h"

namespace moe {

Status LocalExpertBackend::Run(int layer, const float* h, int T, const Routes& routes, float* y) {
  const std::vector<ExpertSlice>& slices = store_->layer(layer);
  MOE_CHECK(!slices.empty(), "no experts held");
  const int64_t D = slices[0].w1.cols;
  std::fill(y, y + int64_t{T} * D, 0.0f);
  // Experts in id order, so each token's contributions are added in id order.
  for (const ExpertSlice& s : slices) {
    MOE_CHECK(s.block_begin == 0 && s.block_end == store_->blocks(), "in-process needs whole experts");
    rows_.clear();
    weights_.clear();
    for (int t = 0; t < T; ++t)
      for (int j = 0; j < routes.k; ++j)
        if (routes.expert[int64_t{t} * routes.k + j] == s.expert) {
          rows_.push_back(t);
          weights_.push_back(routes.weight[int64_t{t} * routes.k + j]);
        }
    const int n = static_cast<int>(rows_.size());
    if (n == 0) continue;
    x_.resize(n * D);
    for (int r = 0; r < n; ++r) std::copy(h + rows_[r] * D, h + (rows_[r] + 1) * D, &x_[r * D]);
    const int blocks = s.block_end - s.block_begin;
    partials_.resize(int64_t{blocks} * n * D);
    out_.resize(n * D);
    ExpertBlockPartials(s, store_->block_size(), x_.data(), n, partials_.data(), scratch_, *pool_);
    SumBlocks(partials_.data(), blocks, n * D, out_.data());
    for (int r = 0; r < n; ++r) {
      float* yt = y + rows_[r] * D;
      const float w = weights_[r];
      for (int64_t d = 0; d < D; ++d) yt[d] += w * out_[r * D + d];
    }
  }
  return Status::Ok();
}

}  // namespace moe
