#include "common/model_config.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/mapped_file.h"

namespace moe {
namespace {

using nlohmann::json;

class KeyReader {
 public:
  KeyReader(const json& j, std::string label) : j_(j), label_(std::move(label)) {}

  // An integer key in [lo, hi]. Missing: error unless `fallback` is given.
  Status Int(const char* key, int lo, int hi, int* out, const int* fallback = nullptr) {
    auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) {
      if (fallback != nullptr) {
        *out = *fallback;
        return Status::Ok();
      }
      return InvalidArgument(label_ + ": missing key '" + key + "'");
    }
    if (!it->is_number_integer())
      return InvalidArgument(label_ + ": key '" + key + "' must be an integer, got " + it->dump());
    int64_t v = it->get<int64_t>();
    if (v < lo || v > hi)
      return InvalidArgument(label_ + ": key '" + key + "' = " + std::to_string(v) +
                             " is out of range [" + std::to_string(lo) + ", " +
                             std::to_string(hi) + "]");
    *out = static_cast<int>(v);
    return Status::Ok();
  }

  Status Real(const char* key, double lo, double hi, double* out, double fallback) {
    auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) {
      *out = fallback;
      return Status::Ok();
    }
    if (!it->is_number())
      return InvalidArgument(label_ + ": key '" + key + "' must be a number, got " + it->dump());
    double v = it->get<double>();
    if (!(v > lo && v <= hi))
      return InvalidArgument(label_ + ": key '" + key + "' = " + it->dump() +
                             " is out of range (" + std::to_string(lo) + ", " +
                             std::to_string(hi) + "]");
    *out = v;
    return Status::Ok();
  }

 private:
  const json& j_;
  std::string label_;
};

// The RoPE kind a rope_scaling or rope_parameters object names, `unnamed` when it names none.
json RopeType(const json& o, const char* unnamed) {
  if (!o.is_object()) return "not an object";
  return o.value("rope_type", o.value("type", json(unnamed)));
}

Status NotPlainRope(const std::string& label, const char* key, const json& value) {
  return InvalidArgument(label + ": " + key + " " + value.dump() +
                         " is not plain RoPE, which is the only kind supported; remove the key, "
                         "or give it \"rope_type\": \"default\"");
}

// RoPE's base: `rope_theta`, or `rope_parameters.rope_theta` as transformers 5 writes it. Only
// plain RoPE is implemented: a scaled one (linear, dynamic, yarn, ...) is refused, not ignored.
StatusOr<double> RopeTheta(const json& j, const std::string& label, double fallback) {
  auto scaling = j.find("rope_scaling");
  if (scaling != j.end() && !scaling->is_null() && RopeType(*scaling, "") != "default")
    return NotPlainRope(label, "rope_scaling", *scaling);
  double theta = fallback;
  MOE_RETURN_IF_ERROR(KeyReader(j, label).Real("rope_theta", 1.0, 1e12, &theta, fallback));
  auto parameters = j.find("rope_parameters");
  if (parameters == j.end() || parameters->is_null()) return theta;
  if (RopeType(*parameters, "default") != "default")
    return NotPlainRope(label, "rope_parameters", *parameters);
  double nested = 0;  // (0: no key)
  MOE_RETURN_IF_ERROR(KeyReader(*parameters, label + ": rope_parameters")
                          .Real("rope_theta", 1.0, 1e12, &nested, 0));
  if (nested == 0) return theta;
  if (j.contains("rope_theta") && !j["rope_theta"].is_null() && nested != theta)
    return InvalidArgument(label + ": rope_theta (" + j["rope_theta"].dump() +
                           ") and rope_parameters.rope_theta (" +
                           (*parameters)["rope_theta"].dump() + ") disagree; keep one");
  return nested;
}

}  // namespace

int FfnBlocks(int ffn) {
  for (int blocks : {8, 4, 2})
    if (ffn % blocks == 0 && (ffn / blocks) % 16 == 0) return blocks;
  for (int blocks : {8, 4, 2})
    if (ffn % blocks == 0) return blocks;
  return 1;
}

std::string ModelConfig::Summary() const {
  std::ostringstream s;
  s << architecture << ": D=" << hidden << " F=" << ffn << " L=" << layers << " H=" << heads
    << " KV=" << kv_heads << " hd=" << head_dim << " V=" << vocab << " ctx=" << max_positions
    << " rope_theta=" << rope_theta << " eps=" << rms_norm_eps
    << " window=" << (sliding_window ? std::to_string(sliding_window) : "none");
  if (is_moe()) s << " experts=" << num_experts << " top-" << experts_per_token;
  else s << " dense MLP";
  return s.str();
}

StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text, const std::string& label) {
  json j = json::parse(json_text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return InvalidArgument(label + ": not a valid JSON object");
  ModelConfig c;
  auto arch = j.find("architectures");
  if (arch == j.end() || !arch->is_array() || arch->empty() || !(*arch)[0].is_string())
    return InvalidArgument(label + ": missing 'architectures' (expected [\"MixtralForCausalLM\"] "
                                   "or [\"MistralForCausalLM\"])");
  c.architecture = (*arch)[0].get<std::string>();
  const bool moe = c.architecture == "MixtralForCausalLM";
  if (!moe && c.architecture != "MistralForCausalLM")
    return InvalidArgument(label + ": architecture '" + c.architecture +
                           "' is not supported (MixtralForCausalLM or MistralForCausalLM)");
  auto act = j.find("hidden_act");
  if (act != j.end() && !(act->is_string() && act->get<std::string>() == "silu"))
    return InvalidArgument(label + ": hidden_act " + act->dump() + " is not supported (silu)");

  KeyReader r(j, label);
  constexpr int kBig = 1 << 20;
  MOE_RETURN_IF_ERROR(r.Int("hidden_size", 1, kBig, &c.hidden));
  MOE_RETURN_IF_ERROR(r.Int("intermediate_size", 1, 1 << 22, &c.ffn));
  MOE_RETURN_IF_ERROR(r.Int("num_hidden_layers", 1, 4096, &c.layers));
  MOE_RETURN_IF_ERROR(r.Int("num_attention_heads", 1, 4096, &c.heads));
  MOE_RETURN_IF_ERROR(r.Int("num_key_value_heads", 1, c.heads, &c.kv_heads, &c.heads));
  const int default_head_dim = c.hidden / c.heads;
  MOE_RETURN_IF_ERROR(r.Int("head_dim", 2, 4096, &c.head_dim, &default_head_dim));
  if (c.head_dim < 2)
    return InvalidArgument(label + ": hidden_size / num_attention_heads gives a head dimension of " +
                           std::to_string(c.head_dim) + "; give 'head_dim' or fix the sizes");
  MOE_RETURN_IF_ERROR(r.Int("vocab_size", 3, 1 << 24, &c.vocab));
  MOE_RETURN_IF_ERROR(r.Int("max_position_embeddings", 1, 1 << 24, &c.max_positions));
  // A key left out means transformers' default for the architecture (MixtralConfig,
  // MistralConfig); a null window means none.
  double eps = 0;
  MOE_RETURN_IF_ERROR(r.Real("rms_norm_eps", 0.0, 10.0, &eps, moe ? 1e-5 : 1e-6));
  c.rms_norm_eps = static_cast<float>(eps);
  MOE_ASSIGN_OR_RETURN(c.rope_theta, RopeTheta(j, label, moe ? 1e6 : 1e4));
  const int no_window = 0;
  if (!moe && !j.contains("sliding_window")) c.sliding_window = 4096;
  else MOE_RETURN_IF_ERROR(r.Int("sliding_window", 1, 1 << 24, &c.sliding_window, &no_window));
  if (c.sliding_window >= c.max_positions) c.sliding_window = 0;  // never binds
  const int bos = 1, eos = 2;
  MOE_RETURN_IF_ERROR(r.Int("bos_token_id", 0, c.vocab - 1, &c.bos_id, &bos));
  MOE_RETURN_IF_ERROR(r.Int("eos_token_id", 0, c.vocab - 1, &c.eos_id, &eos));
  if (moe) {
    MOE_RETURN_IF_ERROR(r.Int("num_local_experts", 1, 1024, &c.num_experts));
    MOE_RETURN_IF_ERROR(r.Int("num_experts_per_tok", 1, c.num_experts, &c.experts_per_token));
  }
  auto tie = j.find("tie_word_embeddings");
  if (tie != j.end() && !tie->is_null()) {
    if (!tie->is_boolean())
      return InvalidArgument(label + ": key 'tie_word_embeddings' must be true or false");
    c.tie_embeddings = tie->get<bool>();
  }
  if (c.heads % c.kv_heads != 0)
    return InvalidArgument(label + ": num_attention_heads (" + std::to_string(c.heads) +
                           ") must be a multiple of num_key_value_heads (" +
                           std::to_string(c.kv_heads) + ")");
  if (c.head_dim % 2 != 0)
    return InvalidArgument(label + ": head_dim must be even for RoPE, got " +
                           std::to_string(c.head_dim));
  return c;
}

StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  MOE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseModelConfig(text, path);
}

}  // namespace moe
