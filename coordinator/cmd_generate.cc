// moe generate: one prompt in, tokens out (streamed as text, or one JSON object).
#include <charconv>
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "common/npy.h"
#include "coordinator/cli_common.h"
#include "coordinator/generator.h"
#include "coordinator/text_stream.h"
#include "coordinator/tokenizer.h"

namespace moe::cli {
namespace {

struct GenerateFlags {
  RuntimeOptions runtime;
  std::string prompt;
  std::string prompt_ids;
  GenerateOptions gen;
  bool json = false;
  bool stats = false;
  std::string dump_logits;       // PREFIX for PREFIX.prompt.npy and PREFIX.gen.npy
  std::string dump_activations;  // DIR for every layer's intermediate values
  std::string seed;              // as given: a number parser would wrap "-1" around
};

// Writes DIR/<name>[.L<layer>].step<k>.npy for each traced value.
ActivationSink ActivationWriter(const std::string& dir) {
  auto step = std::make_shared<int>(0);
  return [dir, step](const std::string& name, int layer, const float* data, int64_t rows,
                     int64_t cols) {
    std::string file = dir + "/step" + std::to_string(*step) + "." + name;
    if (layer >= 0) file += ".L" + std::to_string(layer);
    WriteNpy(file + ".npy", data, {rows, cols}).ok();
    if (name == "logits") ++*step;
  };
}

}  // namespace

int Generate(int argc, char** argv, Transport& transport) {
  GenerateFlags f;
  po::options_description options("generate flags");
  AddModelFlags(options, f.runtime);
  options.add_options()
      ("prompt", po::value(&f.prompt), "prompt text (tokenized with BOS, needs tokenizer.model)")
      ("prompt-ids", po::value(&f.prompt_ids), "prompt as token ids, e.g. \"1 2 3\" (no tokenizer)")
      ("max-tokens", po::value(&f.gen.max_tokens)->default_value(64), "tokens to generate at most")
      ("temperature", po::value(&f.gen.sampling.temperature)->default_value(0.0f),
       "sampling temperature (0 = greedy)")
      ("top-k", po::value(&f.gen.sampling.top_k)->default_value(0), "keep the k most likely (0 = all)")
      ("top-p", po::value(&f.gen.sampling.top_p)->default_value(1.0f), "nucleus sampling mass in (0, 1]")
      ("seed", po::value(&f.seed)->default_value("0"),
       "random seed in [0, 2^64) (same seed, same tokens)")
      ("ignore-eos", po::bool_switch(&f.gen.ignore_eos), "keep generating after EOS")
      ("prefill-chunk", po::value(&f.gen.prefill_chunk)->default_value(0),
       "prompt tokens per forward step (0 = 512, or the sliding window if smaller)")
      ("json", po::bool_switch(&f.json), "print one JSON object instead of streaming text")
      ("stats", po::bool_switch(&f.stats), "print time per phase and tokens per expert and rank")
      ("dump-logits", po::value(&f.dump_logits),
       "write PREFIX.prompt.npy [P, vocab] and PREFIX.gen.npy [N, vocab] (float32)")
      ("dump-activations", po::value(&f.dump_activations),
       "write every layer's intermediate values as .npy files into this existing directory");
  po::variables_map vm;
  if (int rc = ParseFlags("generate", "--model DIR (--prompt TEXT | --prompt-ids IDS) [flags]",
                          options, argc, argv, vm);
      rc >= 0)
    return rc;
  if (vm.count("prompt") == vm.count("prompt-ids"))
    return Fail("generate", InvalidArgument("give exactly one of --prompt and --prompt-ids"));
  const char* seed_end = f.seed.data() + f.seed.size();
  const auto [seed_stop, seed_error] =
      std::from_chars(f.seed.data(), seed_end, f.gen.sampling.seed);
  if (f.seed.empty() || seed_stop != seed_end || seed_error != std::errc())
    return Fail("generate", InvalidArgument("--seed must be an integer in [0, 2^64), got '" +
                                            f.seed + "'"));

  // What needs no model is checked before the load: the prompt, and where the dumps go.
  const bool text_prompt = vm.count("prompt") > 0;
  std::vector<int> prompt;  // rank 0's
  const Status inputs = CheckBeforeLoading(transport, [&]() -> Status {
    if (text_prompt) {
      if (f.prompt.empty()) return InvalidArgument("--prompt is empty");
      MOE_RETURN_IF_ERROR(CheckUtf8(f.prompt).WithContext("--prompt"));
      MOE_RETURN_IF_ERROR(CheckTokenizerFile(f.runtime.model_dir, "--prompt-ids"));
    } else {
      MOE_ASSIGN_OR_RETURN(prompt, ParseIds(f.prompt_ids, "--prompt-ids"));
    }
    if (!f.dump_activations.empty())
      MOE_RETURN_IF_ERROR(CheckDirectory(f.dump_activations, "--dump-activations"));
    if (!f.dump_logits.empty())
      MOE_RETURN_IF_ERROR(CheckWritablePrefix(f.dump_logits, "--dump-logits"));
    return Status::Ok();
  });
  if (!inputs.ok()) return Fail("generate", inputs);

  auto t0 = std::chrono::steady_clock::now();
  auto runtime = Runtime::Open(f.runtime, &transport);
  if (!runtime.ok()) return Fail("generate", runtime.status());
  if (*runtime == nullptr) return kExitOk;  // a worker rank, done serving
  Runtime& rt = **runtime;
  const double load_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const ModelConfig& c = rt.config();
  if (f.gen.prefill_chunk == 0)
    f.gen.prefill_chunk = c.sliding_window > 0 ? std::min(512, c.sliding_window) : 512;
  if (f.gen.prefill_chunk > rt.experts().MaxTokensPerStep())
    return Fail("generate", InvalidArgument("--prefill-chunk must be at most " +
                                            std::to_string(rt.experts().MaxTokensPerStep()) +
                                            " with this model and rank count"));

  if (text_prompt) {
    if (rt.tokenizer() == nullptr)
      return Fail("generate", NoTokenizer(f.runtime.model_dir, "--prompt-ids"));
    auto ids = rt.tokenizer()->Encode(f.prompt);
    if (!ids.ok()) return Fail("generate", ids.status().WithContext("--prompt"));
    prompt = *ids;
  }
  f.gen.keep_logits = !f.dump_logits.empty();
  if (!f.dump_activations.empty())
    rt.model().set_activation_sink(ActivationWriter(f.dump_activations));

  // Stream text as it comes (whole characters, with the space after the prompt).
  TextStream text_stream(rt.tokenizer(), {}, prompt);
  std::string text;
  auto stream = [&](int token) {
    bool stopped = false;
    const std::string delta = text_stream.Add(token, &stopped);
    text += delta;
    if (!f.json) std::cout << delta << std::flush;
  };
  if (!f.json && rt.tokenizer() != nullptr && text_prompt) std::cout << f.prompt << std::flush;
  auto result = moe::Generate(rt.model(), prompt, f.gen, stream);
  if (!result.ok()) return Fail("generate", result.status());
  const GenerateResult& r = *result;

  if (!f.dump_logits.empty()) {
    const int64_t V = c.vocab;
    Status s = WriteNpy(f.dump_logits + ".prompt.npy", r.prompt_logits.data(),
                        {static_cast<int64_t>(prompt.size()), V});
    if (s.ok())
      s = WriteNpy(f.dump_logits + ".gen.npy", r.gen_logits.data(),
                   {static_cast<int64_t>(r.generated.size()), V});
    if (!s.ok()) return Fail("generate", s);
  }
  const std::string rest = text_stream.Flush();
  text += rest;
  if (f.json) {
    nlohmann::json out;
    out["prompt_ids"] = prompt;
    out["generated_ids"] = r.generated;
    out["text"] = text;
    out["finish_reason"] = r.finish_reason;
    const double n = static_cast<double>(r.generated.size());
    out["timing"] = {{"load_s", load_seconds},
                     {"prefill_s", r.prefill_seconds},
                     {"decode_s", r.decode_seconds},
                     {"prefill_tok_s", r.prefill_seconds > 0 ? prompt.size() / r.prefill_seconds : 0.0},
                     {"decode_tok_s", r.decode_seconds > 0 ? n / r.decode_seconds : 0.0}};
    out["stats"] = rt.stats().ToJson();
    out["ranks"] = rt.transport().size();
    std::cout << out.dump() << "\n";
  } else if (rt.tokenizer() == nullptr) {
    for (size_t i = 0; i < r.generated.size(); ++i) std::cout << (i ? " " : "") << r.generated[i];
    std::cout << "\n";
  } else {
    std::cout << rest << "\n";
  }
  if (f.stats) std::cerr << rt.stats().ToText();
  return kExitOk;
}

}  // namespace moe::cli
