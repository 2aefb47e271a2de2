#include "coordinator/generator.h"

#include <algorithm>
#include <chrono>

namespace moe {
namespace {

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

}  // namespace

Status ValidateRequest(const ModelConfig& c, const std::vector<int>& prompt,
                       const GenerateOptions& o) {
  if (prompt.empty()) return InvalidArgument("the prompt is empty; give at least one token");
  for (size_t i = 0; i < prompt.size(); ++i)
    if (prompt[i] < 0 || prompt[i] >= c.vocab)
      return InvalidArgument("prompt token " + std::to_string(i) + " has id " +
                             std::to_string(prompt[i]) + ", outside the vocabulary [0, " +
                             std::to_string(c.vocab) + ")");
  if (o.max_tokens < 0) return InvalidArgument("max tokens must be >= 0");
  if (static_cast<int64_t>(prompt.size()) + o.max_tokens > c.max_positions)
    return InvalidArgument("the prompt (" + std::to_string(prompt.size()) + " tokens) plus " +
                           std::to_string(o.max_tokens) +
                           " tokens to generate exceeds the model's context length of " +
                           std::to_string(c.max_positions) +
                           "; shorten the prompt or lower the max tokens");
  if (o.prefill_chunk < 1) return InvalidArgument("the prefill chunk must be >= 1 token");
  if (c.sliding_window > 0 && o.prefill_chunk > c.sliding_window)
    return InvalidArgument("the prefill chunk (" + std::to_string(o.prefill_chunk) +
                           ") must be at most the sliding window (" +
                           std::to_string(c.sliding_window) + ")");
  return ValidateSampling(o.sampling);
}

Status Prefill(Model& model, KvCache& cache, const std::vector<int>& prompt, int chunk,
               std::vector<float>* all_logits, std::vector<float>* last_logits) {
  const int P = static_cast<int>(prompt.size()), V = model.config().vocab;
  if (all_logits) all_logits->resize(int64_t{P} * V);
  for (int start = 0; start < P; start += chunk) {
    const int len = std::min(chunk, P - start);
    std::vector<int> tokens(prompt.begin() + start, prompt.begin() + start + len);
    std::vector<int> rows;
    if (all_logits) {
      for (int i = 0; i < len; ++i) rows.push_back(i);
    } else if (start + len == P) {
      rows.push_back(len - 1);
    }
    float* out = all_logits ? all_logits->data() + int64_t{start} * V : nullptr;
    if (!all_logits && !rows.empty()) {
      last_logits->resize(V);
      out = last_logits->data();
    }
    MOE_RETURN_IF_ERROR(model.Forward(tokens, {{&cache, start, len}}, rows, out));
  }
  if (all_logits && last_logits)
    last_logits->assign(all_logits->end() - V, all_logits->end());
  return Status::Ok();
}

StatusOr<GenerateResult> Generate(Model& model, const std::vector<int>& prompt,
                                  const GenerateOptions& options,
                                  const std::function<void(int)>& on_token) {
  const ModelConfig& c = model.config();
  MOE_RETURN_IF_ERROR(ValidateRequest(c, prompt, options));
  const int P = static_cast<int>(prompt.size());
  auto cache = model.NewCache(P + options.max_tokens);
  GenerateResult result;
  std::vector<float> logits;
  auto t0 = std::chrono::steady_clock::now();
  MOE_RETURN_IF_ERROR(Prefill(model, *cache, prompt, options.prefill_chunk,
                              options.keep_logits ? &result.prompt_logits : nullptr, &logits));
  result.prefill_seconds = Seconds(t0);

  auto t1 = std::chrono::steady_clock::now();
  Sampler sampler(options.sampling);
  result.finish_reason = "length";
  for (int i = 0; i < options.max_tokens; ++i) {
    if (i > 0) {
      // Feed the previous token at its position; the cache holds everything before it.
      const int pos = P + i - 1;
      // On a GPU the logits stay there unless they are kept.
      const bool host_logits = options.keep_logits || !model.on_device();
      MOE_RETURN_IF_ERROR(model.Forward({result.generated.back()}, {{cache.get(), pos, 1}}, {0},
                                        host_logits ? logits.data() : nullptr));
    }
    if (options.keep_logits) result.gen_logits.insert(result.gen_logits.end(), logits.begin(), logits.end());
    std::vector<int> sampled;  // from the last logit row (after a prefill: the prompt's last)
    MOE_RETURN_IF_ERROR(model.Sample({&sampler}, logits.data(), &sampled));
    const int token = sampled[0];
    result.generated.push_back(token);
    if (on_token) on_token(token);
    if (token == c.eos_id && !options.ignore_eos) {
      result.finish_reason = "eos";
      break;
    }
  }
  result.decode_seconds = Seconds(t1);
  return result;
}

}  // namespace moe
