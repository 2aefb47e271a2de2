// Hugging Face tensor names for Mixtral and Mistral, built in this one place.
#pragma once

#include <string>

namespace moe::names {

inline std::string Layer(int l) { return "model.layers." + std::to_string(l) + "."; }

inline std::string Embed() { return "model.embed_tokens.weight"; }
inline std::string FinalNorm() { return "model.norm.weight"; }
inline std::string LmHead() { return "lm_head.weight"; }

inline std::string AttnNorm(int l) { return Layer(l) + "input_layernorm.weight"; }
inline std::string Wq(int l) { return Layer(l) + "self_attn.q_proj.weight"; }
inline std::string Wk(int l) { return Layer(l) + "self_attn.k_proj.weight"; }
inline std::string Wv(int l) { return Layer(l) + "self_attn.v_proj.weight"; }
inline std::string Wo(int l) { return Layer(l) + "self_attn.o_proj.weight"; }
inline std::string FfnNorm(int l) { return Layer(l) + "post_attention_layernorm.weight"; }

// Mixtral: the router and the experts' gate (w1), down (w2) and up (w3) projections.
inline std::string Router(int l) { return Layer(l) + "block_sparse_moe.gate.weight"; }
inline std::string ExpertW(int l, int e, int which) {
  return Layer(l) + "block_sparse_moe.experts." + std::to_string(e) + ".w" +
         std::to_string(which) + ".weight";
}

// Mistral's dense MLP, the same three matrices under other names.
inline std::string MlpGate(int l) { return Layer(l) + "mlp.gate_proj.weight"; }  // as w1
inline std::string MlpDown(int l) { return Layer(l) + "mlp.down_proj.weight"; }  // as w2
inline std::string MlpUp(int l) { return Layer(l) + "mlp.up_proj.weight"; }      // as w3

}  // namespace moe::names

#include <utility>
#include <vector>

#include "common/model_config.h"

namespace moe::names {

// Every tensor a checkpoint of this config holds, with its shape.
inline std::vector<std::pair<std::string, std::vector<int64_t>>> AllTensors(const ModelConfig& c) {
  const int64_t D = c.hidden, F = c.ffn, V = c.vocab;
  const int64_t q = int64_t{c.heads} * c.head_dim, kv = int64_t{c.kv_heads} * c.head_dim;
  std::vector<std::pair<std::string, std::vector<int64_t>>> all = {{Embed(), {V, D}},
                                                                   {FinalNorm(), {D}}};
  if (!c.tie_embeddings) all.push_back({LmHead(), {V, D}});
  for (int l = 0; l < c.layers; ++l) {
    all.push_back({AttnNorm(l), {D}});
    all.push_back({Wq(l), {q, D}});
    all.push_back({Wk(l), {kv, D}});
    all.push_back({Wv(l), {kv, D}});
    all.push_back({Wo(l), {D, q}});
    all.push_back({FfnNorm(l), {D}});
    if (c.is_moe()) {
      all.push_back({Router(l), {c.num_experts, D}});
      for (int e = 0; e < c.num_experts; ++e) {
        all.push_back({ExpertW(l, e, 1), {F, D}});
        all.push_back({ExpertW(l, e, 2), {D, F}});
        all.push_back({ExpertW(l, e, 3), {F, D}});
      }
    } else {
      all.push_back({MlpGate(l), {F, D}});
      all.push_back({MlpDown(l), {D, F}});
      all.push_back({MlpUp(l), {F, D}});
    }
  }
  return all;
}

}  // namespace moe::names
