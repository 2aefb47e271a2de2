#include "coordinator/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace moe {

Status ValidateSampling(const SamplingParams& p) {
  if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature))
    return InvalidArgument("temperature must be >= 0 (0 = greedy), got " +
                           std::to_string(p.temperature));
  if (p.top_k < 0) return InvalidArgument("top_k must be >= 0 (0 = no limit), got " +
                                          std::to_string(p.top_k));
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f))
    return InvalidArgument("top_p must be in (0, 1], got " + std::to_string(p.top_p));
  return Status::Ok();
}

int Argmax(const float* logits, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (logits[i] > logits[best]) best = i;
  return best;
}

int Sampler::Pick(const float* logits, int vocab, uint64_t bits) {
  if (params_.temperature == 0.0f) return Argmax(logits, vocab);
  // Candidates by descending logit (ties: lower id first), cut to top_k.
  order_.resize(vocab);
  std::iota(order_.begin(), order_.end(), 0);
  const int k = params_.top_k > 0 ? std::min(params_.top_k, vocab) : vocab;
  auto by_logit = [logits](int a, int b) {
    return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
  };
  std::partial_sort(order_.begin(), order_.begin() + k, order_.end(), by_logit);
  order_.resize(k);
  // Softmax of logits / temperature over the candidates, in double.
  probs_.resize(k);
  const double max_logit = logits[order_[0]];
  double sum = 0;
  for (int i = 0; i < k; ++i) {
    probs_[i] = std::exp((logits[order_[i]] - max_logit) / params_.temperature);
    sum += probs_[i];
  }
  // Top-p: the smallest prefix whose probability reaches top_p.
  int keep = k;
  if (params_.top_p < 1.0f) {
    double cumulative = 0;
    for (int i = 0; i < k; ++i) {
      cumulative += probs_[i] / sum;
      if (cumulative >= params_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  double kept = 0;
  for (int i = 0; i < keep; ++i) kept += probs_[i];
  // A uniform draw from the generator's raw bits, so results do not depend on the library.
  const double u = static_cast<double>(bits >> 11) * 0x1.0p-53 * kept;
  double acc = 0;
  for (int i = 0; i < keep; ++i) {
    acc += probs_[i];
    if (u < acc) return order_[i];
  }
  return order_[keep - 1];
}

}  // namespace moe
