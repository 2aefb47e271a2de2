// One sequence from prompt to finish: chunked prefill, then decode token by token.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "coordinator/model.h"
#include "coordinator/sampler.h"

namespace moe {

struct GenerateOptions {
  int max_tokens = 64;        // tokens to generate at most
  SamplingParams sampling;    // greedy by default
  bool ignore_eos = false;    // keep going past EOS
  int prefill_chunk = 512;    // prompt tokens per forward step (at most W with a window)
  bool keep_logits = false;   // fill prompt_logits and gen_logits
};

struct GenerateResult {
  std::vector<int> generated;
  std::string finish_reason;       // "eos" or "length"
  std::vector<float> prompt_logits;  // [P, V] when keep_logits
  std::vector<float> gen_logits;     // [N, V] when keep_logits: row i chose generated[i]
  double prefill_seconds = 0;
  double decode_seconds = 0;
};

// Checks prompt ids, lengths against the context and the chunk size against the window.
Status ValidateRequest(const ModelConfig& config, const std::vector<int>& prompt,
                       const GenerateOptions& options);

// Runs the prompt through the model in chunks, writing every position's logits to `logits`
// ([P, V]) when it is non-null, else only the last position's ([1, V]).
Status Prefill(Model& model, KvCache& cache, const std::vector<int>& prompt, int chunk,
               std::vector<float>* all_logits, std::vector<float>* last_logits);

// `on_token` (may be empty) is called after each generated token.
StatusOr<GenerateResult> Generate(Model& model, const std::vector<int>& prompt,
                                  const GenerateOptions& options,
                                  const std::function<void(int)>& on_token = {});

}  // namespace moe
