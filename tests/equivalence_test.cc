// Equivalences that must hold bit for bit, because every reduction has a fixed order:
// cached decode == full re-prefill, chunked prefill == one-shot prefill, rolling buffer ==
// full cache with a window mask, and a sequence batched with others == the sequence alone.
#include <gtest/gtest.h>

#include "coordinator/generator.h"
#include "coordinator/runtime.h"
#include "test_util.h"

namespace moe {
namespace {

using testing::BitEqual;
using testing::ModelDir;

std::vector<int> PromptOf(int n, int seed) {
  std::vector<int> ids = {1};
  for (int i = 1; i < n; ++i) ids.push_back(3 + (i * 7919 + seed * 104729) % 509);
  return ids;
}

class EquivalenceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto rt = Runtime::Open({ModelDir(GetParam()), 2});
    ASSERT_TRUE(rt.ok()) << rt.status().ToString();
    rt_ = std::move(*rt);
  }
  Model& model() { return rt_->model(); }
  int window() { return model().config().sliding_window; }
  int max_chunk() { return window() ? window() : 512; }

  // Every position's logits for `ids`, prefilled `chunk` tokens at a time into `cache`.
  std::vector<float> PrefillAll(const std::vector<int>& ids, int chunk, KvCache* cache = nullptr) {
    auto own = model().NewCache(static_cast<int>(ids.size()));
    std::vector<float> all, last;
    Status s = Prefill(model(), cache ? *cache : *own, ids, chunk, &all, &last);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return all;
  }

  std::unique_ptr<Runtime> rt_;
};

TEST_P(EquivalenceTest, CachedDecodeEqualsFullRePrefill) {
  const std::vector<int> prompt = PromptOf(13, 1);  // longer than the test window of 8
  GenerateOptions options;
  options.max_tokens = 12;
  options.ignore_eos = true;
  options.keep_logits = true;
  options.prefill_chunk = max_chunk();
  auto result = Generate(model(), prompt, options);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  const int V = model().config().vocab;
  std::vector<int> ids = prompt;
  for (int i = 0; i < options.max_tokens; ++i) {
    // Re-run everything so far from scratch; its last row must equal the cached decode's.
    std::vector<float> all = PrefillAll(ids, max_chunk());
    std::vector<float> last(all.end() - V, all.end());
    std::vector<float> cached(result->gen_logits.begin() + int64_t{i} * V,
                              result->gen_logits.begin() + int64_t{i + 1} * V);
    ASSERT_TRUE(BitEqual(last, cached)) << "step " << i;
    ids.push_back(result->generated[i]);
  }
}

TEST_P(EquivalenceTest, ChunkedPrefillEqualsOneShot) {
  const std::vector<int> prompt = PromptOf(29, 2);
  const std::vector<float> one_shot = PrefillAll(prompt, max_chunk());
  for (int chunk : {1, 3, 5, 8}) {
    if (chunk > max_chunk()) continue;
    EXPECT_TRUE(BitEqual(PrefillAll(prompt, chunk), one_shot)) << "chunk " << chunk;
  }
}

// Only the models with a sliding window (instantiated below).
class WindowedEquivalenceTest : public EquivalenceTest {};

TEST_P(WindowedEquivalenceTest, RollingBufferEqualsFullCacheWithWindowMask) {
  ASSERT_GT(window(), 0) << GetParam() << " has no sliding window";
  const std::vector<int> prompt = PromptOf(31, 3);
  const ModelConfig& c = model().config();
  auto cache = model().NewCache(static_cast<int>(prompt.size()));
  auto* rolling = dynamic_cast<RollingKvCache*>(cache.get());
  ASSERT_NE(rolling, nullptr);
  ASSERT_EQ(rolling->slots(), window());
  for (int chunk : {1, 4, window()}) {
    auto r = model().NewCache(static_cast<int>(prompt.size()));
    RollingKvCache f(c.layers, static_cast<int>(prompt.size()), c.kv_heads * c.head_dim);
    EXPECT_TRUE(BitEqual(PrefillAll(prompt, chunk, r.get()), PrefillAll(prompt, chunk, &f)))
        << "chunk " << chunk;
  }
}

// One step holding a prefill chunk of sequence A and a decode token of sequence B gives each
// the bits it gets alone.
TEST_P(EquivalenceTest, BatchedSequencesEqualAlone) {
  const int V = model().config().vocab;
  const std::vector<int> a = PromptOf(6, 4), b = PromptOf(9, 5);
  // Alone: A's chunk, and B's prefill followed by one decode token.
  auto cache_a = model().NewCache(16), cache_b = model().NewCache(16);
  std::vector<float> a_alone(6 * V), b_alone(V), scratch;
  ASSERT_TRUE(model().Forward(a, {{cache_a.get(), 0, 6}}, {0, 1, 2, 3, 4, 5}, a_alone.data()).ok());
  std::vector<int> b_prefix(b.begin(), b.end() - 1);
  ASSERT_TRUE(Prefill(model(), *cache_b, b_prefix, max_chunk(), nullptr, &scratch).ok());
  ASSERT_TRUE(model().Forward({b.back()}, {{cache_b.get(), 8, 1}}, {0}, b_alone.data()).ok());
  // Together, B's decode token first, then A's chunk.
  auto cache_a2 = model().NewCache(16), cache_b2 = model().NewCache(16);
  ASSERT_TRUE(Prefill(model(), *cache_b2, b_prefix, max_chunk(), nullptr, &scratch).ok());
  std::vector<int> tokens = {b.back()};
  tokens.insert(tokens.end(), a.begin(), a.end());
  std::vector<float> both(7 * V);
  ASSERT_TRUE(model()
                  .Forward(tokens, {{cache_b2.get(), 8, 1}, {cache_a2.get(), 0, 6}},
                           {0, 1, 2, 3, 4, 5, 6}, both.data())
                  .ok());
  EXPECT_TRUE(BitEqual(std::vector<float>(both.begin(), both.begin() + V), b_alone));
  EXPECT_TRUE(BitEqual(std::vector<float>(both.begin() + V, both.end()), a_alone));
}

std::string TestName(const ::testing::TestParamInfo<std::string>& info) {
  std::string n = info.param;
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
}

INSTANTIATE_TEST_SUITE_P(Windowed, WindowedEquivalenceTest,
                         ::testing::Values("mixtral-window", "mistral-window"), TestName);

INSTANTIATE_TEST_SUITE_P(Models, EquivalenceTest,
                         ::testing::Values("mixtral-f32", "mixtral-window", "mistral-window",
                                           "mixtral-eps", "mixtral-bf16-sharded"),
                         TestName);

}  // namespace
}  // namespace moe
