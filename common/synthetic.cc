#include "common/synthetic.h"

#include <algorithm>
#include <cmath>
#include <thread>
#include <vector>

#include "common/dtype.h"
#include "common/identity.h"

namespace moe {
namespace {

struct Preset {
  const char* name;
  int hidden, ffn, layers, heads, kv_heads, vocab, experts, window;
  double rope_theta;
};

// Shapes from the models' Hugging Face config.json files.
constexpr Preset kPresets[] = {
    {"mistral-7b", 4096, 14336, 32, 32, 8, 32000, 0, 4096, 1e4},
    {"mixtral-8x7b", 4096, 14336, 32, 32, 8, 32000, 8, 0, 1e6},
    {"mixtral-8x22b", 6144, 16384, 56, 48, 8, 32768, 8, 0, 1e6},
    {"bench-1b", 1024, 3584, 8, 16, 4, 32000, 8, 0, 1e6},
};

}  // namespace

std::string SyntheticPresetNames() {
  std::string s;
  for (const Preset& p : kPresets) s += (s.empty() ? "" : ", ") + std::string(p.name);
  return s;
}

StatusOr<ModelConfig> SyntheticPreset(const std::string& name, int layers) {
  for (const Preset& p : kPresets) {
    if (name != p.name) continue;
    if (layers < 0 || layers > p.layers)
      return InvalidArgument("--layers must be in [1, " + std::to_string(p.layers) + "] for " + name);
    ModelConfig c;
    c.architecture = p.experts ? "MixtralForCausalLM" : "MistralForCausalLM";
    c.hidden = p.hidden;
    c.ffn = p.ffn;
    c.layers = layers > 0 ? layers : p.layers;
    c.heads = p.heads;
    c.kv_heads = p.kv_heads;
    c.head_dim = p.hidden / p.heads;
    c.vocab = p.vocab;
    c.max_positions = 32768;
    c.rms_norm_eps = 1e-5f;
    c.rope_theta = p.rope_theta;
    c.sliding_window = p.window;
    c.num_experts = p.experts;
    c.experts_per_token = p.experts ? 2 : 0;
    return c;
  }
  return InvalidArgument("unknown synthetic preset '" + name + "' (one of " +
                         SyntheticPresetNames() + ")");
}

void FillSynthetic(const std::string& name, float std, uint16_t* out, int64_t n) {
  // Uniform in [-a, a] has standard deviation a / sqrt(3). Two threads: the machine's cores
  // are few and big tensors are gigabytes.
  const float a = std * std::sqrt(3.0f);
  // Spans of a fixed size, each with its own stream, so the values do not depend on how many
  // threads make them (ranks on different hosts must agree).
  constexpr int64_t kSpan = 1 << 20;
  const uint64_t seed = Fnv1a(name.data(), name.size());
  const int64_t spans = (n + kSpan - 1) / kSpan;
  const int parts = static_cast<int>(std::max<unsigned>(1, std::thread::hardware_concurrency()));
  std::vector<std::thread> threads;
  for (int p = 0; p < parts; ++p)
    threads.emplace_back([=] {
      for (int64_t span = p; span < spans; span += parts) {
        uint64_t s = seed ^ (0x9E3779B97F4A7C15ull * (span + 1));
        for (int64_t i = span * kSpan; i < std::min(n, (span + 1) * kSpan); ++i) {
          s ^= s << 13;  // xorshift64
          s ^= s >> 7;
          s ^= s << 17;
          const float u = static_cast<float>(s >> 40) * (1.0f / 16777216.0f);  // [0, 1)
          out[i] = F32ToBf16((2.0f * u - 1.0f) * a);
        }
      }
    });
  for (auto& t : threads) t.join();
}

}  // namespace moe
