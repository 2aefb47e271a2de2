// The sampler's pick from one row of logits (coordinator/sampler.h), and the part of it that
// puts the candidates in order (LogitOrder, a radix sort of the logits' bits for most of a
// vocabulary) against a comparison sort of the ids (what the sampler did before), measured in
// the same run; the two orders must be the same.
//
//   moe_bench_sampler [--vocab V] [--rounds R]
//
// Prints one JSON line per top_k: milliseconds per pick, and per ordering each way (medians of
// R rounds over 50 rows).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "coordinator/sampler.h"

namespace {

// The k best ids, best first, ties by lower id, by a comparison sort.
void ComparisonSort(const float* logits, int vocab, int k, std::vector<int>& order) {
  order.resize(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [logits](int a, int b) {
    return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
  });
  order.resize(k);
}

template <typename Pick>
double MedianMs(int rounds, int picks, Pick pick) {
  std::vector<double> ms;
  for (int r = 0; r < rounds; ++r) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < picks; ++i) pick(i);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                           start).count() / picks);
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int vocab = 32000, rounds = 7;
  bool ok = argc % 2 == 1;
  for (int i = 1; ok && i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--vocab") == 0) vocab = std::atoi(argv[i + 1]);
    else if (std::strcmp(argv[i], "--rounds") == 0) rounds = std::atoi(argv[i + 1]);
    else ok = false;
  }
  if (!ok || vocab < 1 || rounds < 1) {
    std::fprintf(stderr, "usage: moe_bench_sampler [--vocab V >= 1] [--rounds R >= 1]\n");
    return 2;
  }
  constexpr int kPicks = 50;
  std::mt19937 gen(1);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> logits(static_cast<size_t>(kPicks) * vocab);
  for (float& l : logits) l = normal(gen);
  for (const int top_k : {0, 50, 1000}) {
    const int k = top_k > 0 ? std::min(top_k, vocab) : vocab;
    const moe::SamplingParams params{0.8f, top_k, 1.0f, 7};
    moe::Sampler sampler(params);
    moe::LogitOrder radix;
    std::vector<int> order;
    int differ = 0;
    auto row = [&](int i) { return &logits[static_cast<size_t>(i) * vocab]; };
    for (int i = 0; i < kPicks; ++i) {
      ComparisonSort(row(i), vocab, k, order);
      differ += radix.Top(row(i), vocab, k) != order;
    }
    const double pick = MedianMs(rounds, kPicks, [&](int i) {
      sampler.Pick(row(i), vocab, 0x9e3779b97f4a7c15ull * (i + 1));
    });
    const double ordered = MedianMs(rounds, kPicks, [&](int i) { radix.Top(row(i), vocab, k); });
    const double compared =
        MedianMs(rounds, kPicks, [&](int i) { ComparisonSort(row(i), vocab, k, order); });
    std::printf("{\"vocab\": %d, \"top_k\": %d, \"pick_ms\": %.4f, \"order_ms\": %.4f, "
                "\"comparison_sort_ms\": %.4f, \"order_speedup\": %.2f, "
                "\"different_orders\": %d}\n",
                vocab, top_k, pick, ordered, compared, compared / ordered, differ);
    if (differ != 0) return 1;
  }
  return 0;
}
