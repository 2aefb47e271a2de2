#include "coordinator/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
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

namespace {
// A key whose ascending order is the logits' descending order (-0 and +0 equal, as `>` has
// them).
uint32_t DescendingKey(float logit) {
  if (logit == 0.0f) logit = 0.0f;
  uint32_t bits;
  std::memcpy(&bits, &logit, sizeof bits);
  const uint32_t ascending = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return ~ascending;
}
}  // namespace

const std::vector<int>& LogitOrder::Top(const float* logits, int vocab, int k) {
  if (static_cast<int64_t>(k) * 32 < vocab) {
    // A few: a partial sort of the ids.
    order_.resize(vocab);
    std::iota(order_.begin(), order_.end(), 0);
    std::partial_sort(order_.begin(), order_.begin() + k, order_.end(), [logits](int a, int b) {
      return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
    });
    order_.resize(k);
    return order_;
  }
  // All (or most): a stable least-significant-digit radix sort of the keys, 11 bits a pass,
  // starting from ids in ascending order, so equal logits keep the lower id first.
  keys_.resize(vocab);
  sorted_keys_.resize(vocab);
  ids_.resize(vocab);
  std::vector<int>& ids = order_;
  ids.resize(vocab);
  for (int i = 0; i < vocab; ++i) {
    keys_[i] = DescendingKey(logits[i]);
    ids[i] = i;
  }
  constexpr int kBits = 11, kBuckets = 1 << kBits;
  for (int shift = 0; shift < 32; shift += kBits) {
    uint32_t start[kBuckets + 1] = {};
    for (int i = 0; i < vocab; ++i) ++start[((keys_[i] >> shift) & (kBuckets - 1)) + 1];
    for (int b = 0; b < kBuckets; ++b) start[b + 1] += start[b];
    for (int i = 0; i < vocab; ++i) {
      const uint32_t to = start[(keys_[i] >> shift) & (kBuckets - 1)]++;
      sorted_keys_[to] = keys_[i];
      ids_[to] = ids[i];
    }
    keys_.swap(sorted_keys_);
    ids.swap(ids_);
  }
  ids.resize(k);
  return ids;
}

int Sampler::Pick(const float* logits, int vocab, uint64_t bits) {
  if (params_.temperature == 0.0f) return Argmax(logits, vocab);
  // Candidates by descending logit (ties: lower id first), cut to top_k.
  const int k = params_.top_k > 0 ? std::min(params_.top_k, vocab) : vocab;
  const std::vector<int>& order = order_.Top(logits, vocab, k);
  // Softmax of logits / temperature over the candidates, in double.
  probs_.resize(k);
  const double max_logit = logits[order[0]];
  double sum = 0;
  for (int i = 0; i < k; ++i) {
    probs_[i] = std::exp((logits[order[i]] - max_logit) / params_.temperature);
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
    if (u < acc) return order[i];
  }
  return order[keep - 1];
}

}  // namespace moe
