// The tokenizer against ids from the reference SentencePiece/transformers tokenizers, and the
// sampler's modes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <nlohmann/json.hpp>

#include "common/mapped_file.h"
#include "coordinator/sampler.h"
#include "coordinator/text_stream.h"
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
    EXPECT_EQ((*tok)->Encode(s).value(), ids) << "'" << s << "'";
    EXPECT_EQ((*tok)->Encode(s).value(), c["hf_llama_tokenizer_ids"].get<std::vector<int>>()) << s;
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

// A directory in the tokenizer's place: an error naming it, not an exception out of the library.
TEST(Tokenizer, DirectoryIsAClearError) {
  testing::ScratchDir dir("moe-tokenizer-dir");
  auto tok = Tokenizer::Load(dir.path());
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.status().message().find(dir.path()), std::string::npos) << tok.status().ToString();
}

// Text that is not UTF-8 is refused, naming the first bad byte, instead of being encoded as
// replacement characters.
TEST(Tokenizer, InvalidUtf8IsRefused) {
  auto tok = Tokenizer::Load(testing::DataDir() + "/tokenizer.model");
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  auto bad = (*tok)->Encode("ab\xff\xfe" "cd");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("byte 2 (0xff)"), std::string::npos)
      << bad.status().ToString();
  EXPECT_TRUE((*tok)->Encode("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80").ok());
}

// The text of a long run of random tokens (many of them single bytes of a character), streamed
// a token at a time, is the text of all of them decoded at once after the prompt: the stream
// decodes only a window, and what it committed before the window never changes.
TEST(TextStream, DeltasJoinToTheWholeDecoding) {
  auto tok = Tokenizer::Load(testing::DataDir() + "/tokenizer.model");
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  std::mt19937 rng(7);
  for (int run = 0; run < 4; ++run) {
    const std::vector<int> prompt = {1, 300, 301, 302, 303, 304};
    std::vector<int> generated;
    TextStream stream(tok->get(), {}, prompt);
    std::string joined;
    for (int i = 0; i < 1500; ++i) {
      // Mostly byte tokens (3 .. 258) in runs that spell whole characters, some not.
      const int token = 3 + static_cast<int>(rng() % ((*tok)->vocab_size() - 3));
      generated.push_back(token);
      bool stopped = false;
      joined += stream.Add(token, &stopped);
      ASSERT_FALSE(stopped);
    }
    joined += stream.Flush();
    std::vector<int> context(prompt.end() - 4, prompt.end()), all = context;
    all.insert(all.end(), generated.begin(), generated.end());
    const std::string whole = (*tok)->Decode(all), head = (*tok)->Decode(context);
    ASSERT_EQ(whole.compare(0, head.size(), head), 0);
    EXPECT_EQ(joined, whole.substr(head.size())) << "run " << run;
  }
}

// A stop string is matched in final text only: while a character's byte tokens arrive, the
// text ends in replacement characters (U+FFFD) that a stop string must not match.
TEST(TextStream, StopStringNeverMatchesAHalfCharacter) {
  auto tok = Tokenizer::Load(testing::DataDir() + "/tokenizer.model");
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  // Byte tokens: <0xNN> is id 3 + NN. E2 82 AC is the euro sign.
  const std::vector<int> euro = {3 + 0xE2, 3 + 0x82, 3 + 0xAC};
  ASSERT_EQ((*tok)->Decode(euro), "\xE2\x82\xAC");
  TextStream stream(tok->get(), {"\xEF\xBF\xBD"}, {1});
  std::string text;
  for (int id : euro) {
    bool stopped = false;
    text += stream.Add(id, &stopped);
    EXPECT_FALSE(stopped) << "stopped at byte token " << id << " of the euro sign";
  }
  text += stream.Flush();
  EXPECT_EQ(text, "\xE2\x82\xAC");
  // A real one still stops: a lone continuation byte is U+FFFD for good once text follows.
  TextStream lone(tok->get(), {"\xEF\xBF\xBD"}, {1});
  bool stopped = false;
  EXPECT_EQ(lone.Add(3 + 0x82, &stopped), "");
  EXPECT_FALSE(stopped);
  lone.Add(300, &stopped);
  EXPECT_TRUE(stopped);
}

TEST(Utf8, FirstInvalidByte) {
  const std::pair<std::string, int64_t> cases[] = {
      {"", -1},
      {"plain ascii", -1},
      {"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf", -1},  // up to U+10FFFF
      {"a\x80", 1},                 // a continuation byte with no lead
      {"a\xc0\xaf", 1},            // overlong '/'
      {"\xe0\x80\xaf", 1},        // overlong in three bytes
      {"\xed\xa0\x80", 1},        // a surrogate (U+D800)
      {"\xf4\x90\x80\x80", 1},   // past U+10FFFF
      {"\xf5\x80\x80\x80", 0},   // no such lead
      {"ab\xe2\x82", 2},           // cut short at the end: its first byte
      {"\xe2\x28\xa1", 1},        // a lead followed by ASCII
      {"\xf0\x9f\x98\x28", 3},   // the third continuation is not one
  };
  for (const auto& [text, want] : cases) EXPECT_EQ(FirstInvalidUtf8(text), want) << want;
}

// The candidates' order is the comparison sort's (descending logit, ties by lower id), on the
// radix path (most of the vocabulary) and the partial-sort path (a few; vocab / 32 - 1 is the
// last k it takes), with ties, both zeros and infinities.
TEST(LogitOrder, MatchesAComparisonSort) {
  std::mt19937 gen(5);
  for (const int vocab : {1, 2, 17, 1000, 32000}) {
    std::vector<float> logits(vocab);
    std::uniform_int_distribution<int> level(-40, 40);
    for (float& l : logits) l = static_cast<float>(level(gen)) * 0.25f;  // many ties
    for (int i = 0; i < vocab; i += 7) logits[i] = (i / 7) % 2 ? 0.0f : -0.0f;
    if (vocab > 4) {
      logits[1] = std::numeric_limits<float>::infinity();
      logits[3] = -std::numeric_limits<float>::infinity();
      logits[4] = 1e-40f;  // subnormal
      logits[vocab - 1] = -1e-40f;
    }
    std::vector<int> expect(vocab);
    std::iota(expect.begin(), expect.end(), 0);
    std::sort(expect.begin(), expect.end(), [&](int a, int b) {
      return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
    });
    LogitOrder order;
    for (const int k : {1, 3, vocab / 32 - 1, vocab / 32, vocab / 2, vocab - 1, vocab}) {
      if (k < 1 || k > vocab) continue;
      const std::vector<int>& got = order.Top(logits.data(), vocab, k);
      ASSERT_EQ(got, std::vector<int>(expect.begin(), expect.begin() + k))
          << "vocab " << vocab << ", k " << k;
    }
  }
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
