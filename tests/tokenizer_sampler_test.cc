// The tokenizer against ids from the reference SentencePiece/transformers tokenizers, and the
// sampler's modes.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "common/mapped_file.h"
#include "coordinator/sampler.h"
#include "coordinator/tokenizer.h"
#include "test_util.h"

namespace moe {
namespace {

TEST(Tokenizer, MatchesReferenceIdsAndDecoding) {
  auto tok = Tokenizer::Load(testing::DataDir() + "/tokenizer.model");
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  auto text = ReadFileToString(testing::DataDir() + "/golden/tokenizer.json");
  ASSERT_TRUE(text.ok());
  const auto golden = nlohmann::json::parse(*text);
  ASSERT_GE(golden["cases"].size(), 8u);
  for (const auto& c : golden["cases"]) {
    const std::string s = c["text"];
    const std::vector<int> ids = c["ids"];
    EXPECT_EQ((*tok)->Encode(s), ids) << "'" << s << "'";
    EXPECT_EQ((*tok)->Encode(s), c["hf_llama_tokenizer_ids"].get<std::vector<int>>()) << s;
    std::vector<int> body(ids.begin() + 1, ids.end());
    EXPECT_EQ((*tok)->Decode(body), c["decoded"].get<std::string>()) << "'" << s << "'";
    // Special tokens vanish from decoded text.
    std::vector<int> with_specials = ids;
    with_specials.push_back((*tok)->eos_id());
    EXPECT_EQ((*tok)->Decode(with_specials), c["decoded"].get<std::string>());
  }
  EXPECT_EQ((*tok)->bos_id(), 1);
  EXPECT_EQ((*tok)->eos_id(), 2);
}

TEST(Tokenizer, MissingFileIsAClearError) {
  auto tok = Tokenizer::Load("/nonexistent/tokenizer.model");
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.status().message().find("/nonexistent/tokenizer.model"), std::string::npos);
}

TEST(Sampler, GreedyTakesFirstMaximum) {
  const float logits[] = {0.5f, 2.0f, -1.0f, 2.0f};
  Sampler s({});
  EXPECT_EQ(s.Next(logits, 4), 1);
}

TEST(Sampler, TopKOneAndTinyTopPAreGreedy) {
  std::vector<float> logits = {0.1f, 0.3f, 1.7f, 1.6f, -2.0f};
  for (uint64_t seed = 0; seed < 20; ++seed) {
    Sampler k1({1.0f, 1, 1.0f, seed});
    Sampler p0({1.0f, 0, 1e-6f, seed});
    EXPECT_EQ(k1.Next(logits.data(), 5), 2);
    EXPECT_EQ(p0.Next(logits.data(), 5), 2);
  }
}

TEST(Sampler, SameSeedSameTokens) {
  std::vector<float> logits = {0.0f, 0.2f, 0.4f, 0.1f, 0.3f};
  Sampler a({0.9f, 0, 0.95f, 42}), b({0.9f, 0, 0.95f, 42});
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.Next(logits.data(), 5), b.Next(logits.data(), 5));
}

// Draw frequencies follow softmax(logits / T), restricted to top-k and renormalised.
TEST(Sampler, FrequenciesFollowTheDistribution) {
  std::vector<float> logits = {1.0f, 0.0f, 2.0f, -1.0f};
  const float T = 0.7f;
  const int draws = 20000;
  for (int top_k : {0, 2}) {
    Sampler s({T, top_k, 1.0f, 7});
    std::map<int, int> counts;
    for (int i = 0; i < draws; ++i) ++counts[s.Next(logits.data(), 4)];
    std::vector<double> p(4);
    double z = 0;
    for (int v = 0; v < 4; ++v) {
      const bool kept = top_k == 0 || v == 2 || v == 0;  // the two largest
      p[v] = kept ? std::exp(logits[v] / T) : 0.0;
      z += p[v];
    }
    for (int v = 0; v < 4; ++v) {
      const double expected = p[v] / z;
      const double sd = std::sqrt(expected * (1 - expected) / draws);
      EXPECT_NEAR(counts[v] / double{draws}, expected, 5 * sd + 1e-9) << "top_k " << top_k << " v " << v;
    }
  }
}

// top_p keeps the smallest prefix of the sorted distribution reaching p.
TEST(Sampler, TopPCutsTheTail) {
  std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  Sampler s({1.0f, 0, 0.75f, 3});  // 0.5 + 0.3 reaches 0.75; 0.5 alone does not
  std::map<int, int> counts;
  for (int i = 0; i < 5000; ++i) ++counts[s.Next(logits.data(), 4)];
  EXPECT_EQ(counts[2] + counts[3], 0);
  EXPECT_NEAR(counts[0] / 5000.0, 0.5 / 0.8, 0.03);
}

TEST(Sampler, ValidationNamesTheParameter) {
  EXPECT_NE(ValidateSampling({-1.0f, 0, 1.0f, 0}).message().find("temperature"), std::string::npos);
  EXPECT_NE(ValidateSampling({1.0f, -1, 1.0f, 0}).message().find("top_k"), std::string::npos);
  EXPECT_NE(ValidateSampling({1.0f, 0, 0.0f, 0}).message().find("top_p"), std::string::npos);
  EXPECT_NE(ValidateSampling({1.0f, 0, 1.5f, 0}).message().find("top_p"), std::string::npos);
  EXPECT_NE(ValidateSampling({NAN, 0, 1.0f, 0}).message().find("temperature"), std::string::npos);
  EXPECT_TRUE(ValidateSampling({0.0f, 0, 1.0f, 0}).ok());
}

}  // namespace
}  // namespace moe
