// Our logits against golden logits from Hugging Face transformers (MixtralForCausalLM /
// MistralForCausalLM in float32 on CPU), made by scripts/make_test_models.py.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/mapped_file.h"
#include "common/npy.h"
#include "coordinator/generator.h"
#include "coordinator/runtime.h"
#include "test_util.h"

namespace moe {
namespace {

using testing::GoldenDir;
using testing::ModelDir;
using testing::RelativeMaxError;

struct GoldenCase {
  std::string model;
  double tolerance;  // max|Δ| / max|logit|
};

class GoldenTest : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(GoldenTest, LogitsAndGreedyContinuationMatchTransformers) {
  const GoldenCase& g = GetParam();
  auto rt = Runtime::Open({ModelDir(g.model), 2});
  ASSERT_TRUE(rt.ok()) << rt.status().ToString();
  Model& model = (*rt)->model();
  auto text = ReadFileToString(GoldenDir(g.model) + "/manifest.json");
  ASSERT_TRUE(text.ok());
  const auto manifest = nlohmann::json::parse(*text);
  ASSERT_EQ(manifest["cases"].size(), 3u);
  const int V = model.config().vocab;
  for (const auto& c : manifest["cases"]) {
    const std::vector<int> prompt = c["prompt_ids"];
    const std::vector<int> greedy = c["greedy_ids"];
    auto prompt_ref = ReadNpy(GoldenDir(g.model) + "/" + c["prompt_logits"].get<std::string>());
    auto gen_ref = ReadNpy(GoldenDir(g.model) + "/" + c["gen_logits"].get<std::string>());
    ASSERT_TRUE(prompt_ref.ok() && gen_ref.ok());
    ASSERT_EQ(prompt_ref->shape, (std::vector<int64_t>{int64_t(prompt.size()), V}));

    GenerateOptions options;
    options.max_tokens = static_cast<int>(greedy.size());
    options.ignore_eos = true;
    options.keep_logits = true;
    options.prefill_chunk = model.config().sliding_window ? model.config().sliding_window : 512;
    auto result = Generate(model, prompt, options);
    ASSERT_TRUE(result.ok()) << result.status().ToString();
    const double prompt_err = RelativeMaxError(result->prompt_logits.data(),
                                               prompt_ref->data.data(), prompt_ref->data.size());
    EXPECT_LE(prompt_err, g.tolerance) << g.model << " prompt of " << prompt.size();
    EXPECT_EQ(result->generated, greedy) << g.model << " prompt of " << prompt.size();
    ASSERT_EQ(result->gen_logits.size(), gen_ref->data.size());
    const double gen_err = RelativeMaxError(result->gen_logits.data(), gen_ref->data.data(),
                                            gen_ref->data.size());
    EXPECT_LE(gen_err, g.tolerance) << g.model << " generated logits";
    RecordProperty(g.model + "_err", std::to_string(std::max(prompt_err, gen_err)));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Models, GoldenTest,
    ::testing::Values(GoldenCase{"mixtral-f32", 1e-5}, GoldenCase{"mixtral-window", 1e-5},
                      GoldenCase{"mistral-window", 1e-5}, GoldenCase{"mixtral-bf16-sharded", 1e-4},
                      GoldenCase{"mixtral-eps", 1e-4}, GoldenCase{"mistral-bf16", 1e-4}),
    [](const auto& info) {
      std::string n = info.param.model;
      std::replace(n.begin(), n.end(), '-', '_');
      return n;
    });

}  // namespace
}  // namespace moe
