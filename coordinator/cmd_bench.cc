// moe bench: prompt-processing and decode speed, as median and spread over repetitions (the
// way llama-bench reports them), with the bytes of weights a decode step reads and the implied
// bandwidth, on a checkpoint or on a synthetic model at the real shapes.
#include <algorithm>
#include <chrono>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>

#include "common/kernels.h"
#include "common/synthetic.h"
#include "coordinator/cli_common.h"
#include "coordinator/sampler.h"

namespace moe::cli {
namespace {

struct Spread {
  double median = 0, min = 0, max = 0;
};

Spread Summarize(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return {n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]), v.front(), v.back()};
}

nlohmann::json ToJson(const Spread& s) {
  return {{"median", s.median}, {"min", s.min}, {"max", s.max}};
}

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Floating-point operations of a prefill of `B` sequences of `P` tokens: matmuls as
// 2 x rows x cols per token, attention as 2 x 2 x visible keys x H x hd, lm_head for the last
// token of each sequence.
double PrefillFlops(const ModelConfig& c, int B, int P) {
  const double D = c.hidden, hd = c.head_dim, T = static_cast<double>(B) * P;
  const double q = c.heads * hd, kv = c.kv_heads * hd;
  const double experts = c.is_moe() ? c.experts_per_token : 1;
  double per_token = 2 * D * (q + 2 * kv) + 2 * q * D + 2 * experts * 3 * D * c.ffn;
  if (c.is_moe()) per_token += 2 * D * c.num_experts;
  double keys = 0;  // visible keys summed over one sequence's positions
  for (int p = 0; p < P; ++p) keys += c.sliding_window ? std::min(p + 1, c.sliding_window) : p + 1;
  const double attention = 4 * keys * c.heads * hd * B;
  return c.layers * (T * per_token + attention) + 2.0 * B * D * c.vocab;
}

// A prompt token past BOS, EOS and UNK (0 .. 2) where the vocabulary has more.
int RandomToken(std::mt19937& rng, int V) {
  return V > 3 ? 3 + static_cast<int>(rng() % (V - 3)) : static_cast<int>(rng() % V);
}

}  // namespace

int Bench(int argc, char** argv, Transport& transport) {
  RuntimeOptions runtime;
  int prompt = 128, gen = 64, batch = 1, reps = 3;
  bool json = false;
  std::string isa = "auto", skew = "real";
  po::options_description options("bench flags");
  options.add_options()
      ("model", po::value(&runtime.model_dir), "Hugging Face checkpoint directory")
      ("synthetic", po::value(&runtime.synthetic),
       ("random weights at a preset's shapes: " + SyntheticPresetNames()).c_str())
      ("layers", po::value(&runtime.synthetic_layers)->default_value(0),
       "cut the synthetic model to this many layers (0 = all)")
      ("rank-timeout", po::value(&runtime.rank_timeout)->default_value(120.0),
       "seconds a rank may take to answer")
      ("prompt", po::value(&prompt)->default_value(128), "prompt tokens per sequence")
      ("gen", po::value(&gen)->default_value(64), "decode steps")
      ("batch", po::value(&batch)->default_value(1), "sequences decoded together")
      ("reps", po::value(&reps)->default_value(3), "repetitions (median and spread)")
      ("isa", po::value(&isa)->default_value("auto"), "kernels: auto, generic, avx2, avx512")
      ("router-skew", po::value(&skew)->default_value("real"),
       "routing: real (the router), uniform, or zipf:S (injected, for scaling studies)")
      ("json", po::bool_switch(&json), "print one JSON object");
  AddRankFlags(options, runtime);
  po::variables_map vm;
  if (int rc = ParseFlags("bench", "(--model DIR | --synthetic PRESET [--layers L]) [flags]",
                          options, argc, argv, vm);
      rc >= 0)
    return rc;
  if (runtime.model_dir.empty() == runtime.synthetic.empty())
    return Fail("bench", InvalidArgument("give exactly one of --model and --synthetic"));
  if (prompt < 1 || gen < 1 || batch < 1 || reps < 1)
    return Fail("bench", InvalidArgument("--prompt, --gen, --batch and --reps must be >= 1"));
  // Every rank must manage the kernels asked for (hosts may differ).
  if (Status s = transport.AgreeOnStatus(SetKernelIsa(isa)); !s.ok()) return Fail("bench", s);

  const double t_load = Now();
  auto rt_or = Runtime::Open(runtime, &transport);
  if (!rt_or.ok()) return Fail("bench", rt_or.status());
  if (*rt_or == nullptr) return kExitOk;  // a worker rank, done serving
  Runtime& rt = **rt_or;
  const double load_seconds = Now() - t_load;
  const ModelConfig& c = rt.config();
  if (c.is_moe()) {
    auto route_skew = RouteSkew::Parse(skew, c.num_experts);
    if (!route_skew.ok()) return Fail("bench", route_skew.status());
    rt.model().set_route_skew(std::move(route_skew).value());
  } else if (skew != "real") {
    return Fail("bench", InvalidArgument("--router-skew needs a mixture-of-experts model"));
  }
  if (int64_t{prompt} + gen > c.max_positions)
    return Fail("bench", InvalidArgument("--prompt + --gen exceeds the context length " +
                                         std::to_string(c.max_positions)));
  const int chunk = c.sliding_window ? std::min(prompt, c.sliding_window) : prompt;
  if (int64_t{batch} * chunk > rt.experts().MaxTokensPerStep())
    return Fail("bench", InvalidArgument("--batch x the prefill step (" +
                                         std::to_string(int64_t{batch} * chunk) +
                                         " tokens) is more than one exchange can carry here (" +
                                         std::to_string(rt.experts().MaxTokensPerStep()) + ")"));
  Model& model = rt.model();
  const int V = c.vocab;
  const int64_t expert_bytes_per_layer =
      3ll * c.hidden * c.ffn * 2;  // bf16 (synthetic); checkpoints: by their dtype below
  int64_t expert_bytes = expert_bytes_per_layer;
  if (runtime.synthetic.empty()) {
    for (const auto& [name, t] : rt.checkpoint().tensors())
      if (name.find(".experts.0.") != std::string::npos || name.find(".mlp.") != std::string::npos) {
        expert_bytes = 3ll * c.hidden * c.ffn * DTypeSize(t.dtype);
        break;
      }
  }

  std::vector<double> prefill_tok_s, decode_tok_s, decode_gb_s;
  double bytes_per_step = 0;
  std::mt19937 rng(1234);
  for (int rep = 0; rep < reps; ++rep) {
    std::vector<std::unique_ptr<KvCache>> caches = model.NewCaches(batch, prompt + gen);
    std::vector<Sampler> greedy(batch, Sampler(SamplingParams{}));
    std::vector<Sampler*> samplers;
    for (Sampler& s : greedy) samplers.push_back(&s);
    // On a GPU the logits stay there: the next tokens are picked on the device.
    const bool host_logits = !model.on_device();
    std::vector<int> next(batch);
    // Prefill: all sequences' prompts, `chunk` tokens of each per step.
    const double t0 = Now();
    for (int start = 0; start < prompt; start += chunk) {
      const int len = std::min(chunk, prompt - start);
      std::vector<int> tokens, rows;
      std::vector<SequenceChunk> chunks;
      for (int b = 0; b < batch; ++b) {
        for (int i = 0; i < len; ++i)
          tokens.push_back(start + i == 0 ? c.bos_id : RandomToken(rng, V));
        chunks.push_back({caches[b].get(), start, len});
        if (start + len == prompt) rows.push_back(static_cast<int>(tokens.size()) - 1);
      }
      std::vector<float> logits(host_logits ? rows.size() * static_cast<size_t>(V) : 0);
      Status s = model.Forward(tokens, chunks, rows, host_logits ? logits.data() : nullptr);
      if (s.ok() && !rows.empty())
        s = model.Sample({samplers.begin(), samplers.begin() + rows.size()}, logits.data(), &next);
      if (!s.ok()) return Fail("bench", s);
    }
    const double t1 = Now();
    // Decode: one token per sequence per step, greedy.
    const int64_t touched0 = rt.stats().experts_touched;
    std::vector<float> logits(host_logits ? static_cast<size_t>(batch) * V : 0);
    std::vector<int> rows(batch);
    for (int b = 0; b < batch; ++b) rows[b] = b;
    for (int step = 0; step < gen; ++step) {
      std::vector<SequenceChunk> chunks;
      for (int b = 0; b < batch; ++b) chunks.push_back({caches[b].get(), prompt + step, 1});
      Status s = model.Forward(next, chunks, rows, host_logits ? logits.data() : nullptr);
      if (s.ok()) s = model.Sample(samplers, logits.data(), &next);
      if (!s.ok()) return Fail("bench", s);
    }
    const double t2 = Now();
    const double experts_per_step =
        static_cast<double>(rt.stats().experts_touched - touched0) / gen;
    bytes_per_step = model.dense_weight_bytes() + experts_per_step * expert_bytes +
                     static_cast<double>(batch) * c.hidden * 2;  // embedding rows
    prefill_tok_s.push_back(static_cast<double>(batch) * prompt / (t1 - t0));
    decode_tok_s.push_back(static_cast<double>(batch) * gen / (t2 - t1));
    decode_gb_s.push_back(bytes_per_step * gen / (t2 - t1) / 1e9);
  }
  const Spread pf = Summarize(prefill_tok_s), dc = Summarize(decode_tok_s),
               bw = Summarize(decode_gb_s);
  const double flops = PrefillFlops(c, batch, prompt);
  nlohmann::json out = {
      {"model", runtime.synthetic.empty() ? runtime.model_dir : "synthetic:" + runtime.synthetic},
      {"config", c.Summary()},
      {"ranks", transport.size()},
      {"device", DeviceText(rt.device())},
      {"threads_rank0", rt.pool().size()},
      {"isa", KernelIsa()},
      {"router_skew", skew},
      {"micro_batches", runtime.micro_batches},
      {"prompt", prompt},
      {"gen", gen},
      {"batch", batch},
      {"reps", reps},
      {"load_s", load_seconds},
      {"prefill_tok_s", ToJson(pf)},
      {"decode_tok_s", ToJson(dc)},
      {"decode_weight_bytes_per_step", bytes_per_step},
      {"decode_gb_s", ToJson(bw)},
      {"prefill_gflop_s", ToJson({pf.median * flops / (static_cast<double>(batch) * prompt) / 1e9,
                                  pf.min * flops / (static_cast<double>(batch) * prompt) / 1e9,
                                  pf.max * flops / (static_cast<double>(batch) * prompt) / 1e9})},
      {"stats", rt.stats().ToJson()}};
  if (json) {
    std::cout << out.dump() << "\n";
  } else {
    std::cout << std::fixed << std::setprecision(2) << out["model"].get<std::string>() << " ("
              << c.Summary() << "), " << transport.size() << " rank(s), "
              << DeviceText(rt.device()) << ", isa " << KernelIsa()
              << "\n  prefill " << prompt << " x " << batch << ": " << pf.median << " tok/s ["
              << pf.min << ", " << pf.max << "], " << out["prefill_gflop_s"]["median"].get<double>()
              << " GFLOP/s\n  decode  " << gen << " x " << batch << ": " << dc.median
              << " tok/s [" << dc.min << ", " << dc.max << "], " << bytes_per_step / 1e6
              << " MB of weights per step, " << bw.median << " GB/s\n";
  }
  return kExitOk;
}

}  // namespace moe::cli
