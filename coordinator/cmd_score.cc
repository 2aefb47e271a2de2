// moe score: teacher-forced mean log-likelihood and perplexity of a text or a list of ids.
#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>

#include "common/mapped_file.h"
#include "coordinator/cli_common.h"
#include "coordinator/generator.h"
#include "coordinator/tokenizer.h"

namespace moe::cli {

// Mean over i of log softmax(logits[i])[ids[i + 1]], in double.
double MeanLogLikelihood(const std::vector<float>& logits, const std::vector<int>& ids, int vocab) {
  double total = 0;
  for (size_t i = 0; i + 1 < ids.size(); ++i) {
    const float* row = &logits[i * vocab];
    double mx = row[0];
    for (int v = 1; v < vocab; ++v) mx = std::max<double>(mx, row[v]);
    double sum = 0;
    for (int v = 0; v < vocab; ++v) sum += std::exp(row[v] - mx);
    total += row[ids[i + 1]] - mx - std::log(sum);
  }
  return total / static_cast<double>(ids.size() - 1);
}

namespace {
Status CheckScorable(const std::vector<int>& ids) {
  if (ids.size() >= 2) return Status::Ok();
  return InvalidArgument("need at least 2 tokens to score, got " + std::to_string(ids.size()));
}
}  // namespace

int Score(int argc, char** argv, Transport& transport) {
  RuntimeOptions runtime;
  std::string text_file, ids_file;
  int chunk = 0;
  bool json = false;
  po::options_description options("score flags");
  AddModelFlags(options, runtime);
  options.add_options()
      ("text-file", po::value(&text_file), "text to score (tokenized with BOS)")
      ("ids-file", po::value(&ids_file), "whitespace-separated token ids, used exactly as given")
      ("prefill-chunk", po::value(&chunk)->default_value(0),
       "tokens per forward step (0 = 512, or the sliding window if smaller)")
      ("json", po::bool_switch(&json), "print one JSON object");
  po::variables_map vm;
  if (int rc = ParseFlags("score", "--model DIR (--text-file F | --ids-file F) [--json]", options,
                          argc, argv, vm);
      rc >= 0)
    return rc;
  if (vm.count("text-file") == vm.count("ids-file"))
    return Fail("score", InvalidArgument("give exactly one of --text-file and --ids-file"));
  const bool text_input = vm.count("text-file") > 0;
  const std::string& file = text_input ? text_file : ids_file;
  std::string content;   // rank 0's
  std::vector<int> ids;  // rank 0's; for a text file, once the tokenizer is loaded
  // What needs no model is checked before the load.
  const Status inputs = CheckBeforeLoading(transport, [&]() -> Status {
    if (chunk < 0)
      return InvalidArgument("--prefill-chunk must be >= 0 (0 = automatic), got " +
                             std::to_string(chunk));
    MOE_ASSIGN_OR_RETURN(content, ReadFileToString(file));
    if (!text_input) {
      MOE_ASSIGN_OR_RETURN(ids, ParseIds(content, file));
      return CheckScorable(ids);
    }
    MOE_RETURN_IF_ERROR(CheckUtf8(content).WithContext(file));
    return CheckTokenizerFile(runtime.model_dir, "--ids-file");
  });
  if (!inputs.ok()) return Fail("score", inputs);

  auto rt_or = Runtime::Open(runtime, &transport);
  if (!rt_or.ok()) return Fail("score", rt_or.status());
  if (*rt_or == nullptr) return kExitOk;  // a worker rank, done serving
  Runtime& rt = **rt_or;
  const ModelConfig& c = rt.config();

  if (text_input) {
    if (rt.tokenizer() == nullptr)
      return Fail("score", NoTokenizer(runtime.model_dir, "--ids-file"));
    auto encoded = rt.tokenizer()->Encode(content);
    if (!encoded.ok()) return Fail("score", encoded.status().WithContext(file));
    ids = *encoded;
    if (Status s = CheckScorable(ids); !s.ok()) return Fail("score", s);
  }
  GenerateOptions check;
  check.max_tokens = 0;
  check.prefill_chunk = chunk > 0 ? chunk : (c.sliding_window > 0 ? std::min(512, c.sliding_window) : 512);
  if (check.prefill_chunk > rt.experts().MaxTokensPerStep())
    return Fail("score", InvalidArgument("--prefill-chunk must be at most " +
                                         std::to_string(rt.experts().MaxTokensPerStep()) +
                                         " with this model and rank count"));
  if (Status s = ValidateRequest(c, ids, check); !s.ok()) return Fail("score", s);

  auto cache = rt.model().NewCache(static_cast<int>(ids.size()));
  std::vector<float> logits, last;
  if (Status s = Prefill(rt.model(), *cache, ids, check.prefill_chunk, &logits, &last); !s.ok())
    return Fail("score", s);
  const double mean = MeanLogLikelihood(logits, ids, c.vocab);
  const double ppl = std::exp(-mean);
  const int64_t scored = static_cast<int64_t>(ids.size()) - 1;
  if (json) {
    nlohmann::json out = {{"tokens", ids.size()}, {"scored_tokens", scored},
                          {"mean_log_likelihood", mean}, {"perplexity", ppl}};
    std::cout << out.dump() << "\n";
  } else {
    std::cout << "tokens " << ids.size() << "  scored " << scored << "  mean log-likelihood "
              << mean << "  perplexity " << ppl << "\n";
  }
  return kExitOk;
}

}  // namespace moe::cli
