// The model's shape and constants, read from a Hugging Face config.json
// (MixtralForCausalLM or MistralForCausalLM). Dense Mistral has num_experts == 0.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace moe {

struct ModelConfig {
  std::string architecture;     // "MixtralForCausalLM" or "MistralForCausalLM"
  int hidden = 0;               // D: hidden_size
  int ffn = 0;                  // F: intermediate_size
  int layers = 0;               // L: num_hidden_layers
  int heads = 0;                // H: num_attention_heads
  int kv_heads = 0;             // KV: num_key_value_heads (GQA groups)
  int head_dim = 0;             // hd: head_dim, default hidden / heads
  int vocab = 0;                // V: vocab_size
  int max_positions = 0;        // max_position_embeddings: the context length
  float rms_norm_eps = 1e-5f;   // rms_norm_eps
  double rope_theta = 1e4;      // rope_theta
  int sliding_window = 0;       // W: 0 = none (full attention)
  int num_experts = 0;          // E: num_local_experts; 0 = dense MLP
  int experts_per_token = 0;    // K: num_experts_per_tok (top-k)
  int bos_id = 1;               // bos_token_id
  int eos_id = 2;               // eos_token_id
  bool tie_embeddings = false;  // tie_word_embeddings: lm_head shares embed_tokens

  bool is_moe() const { return num_experts > 0; }
  std::string Summary() const;  // one line for logs and `moe inspect`
};

// Blocks per expert along the ffn dimension: the largest of 8, 4, 2, 1 that divides F (into
// multiples of 16 where possible). A function of F alone, so the reduction order of an expert's
// down projection never depends on how experts are spread.
int FfnBlocks(int ffn);

// Parses and range-checks config.json text. `label` names the file in errors.
StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text, const std::string& label);

// Reads DIR/config.json.
StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir);

}  // namespace moe
