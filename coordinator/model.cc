#include "coordinator/model.h"

#include <algorithm>
#include <chrono>

#include "common/check.h"
#include "common/tensor_names.h"
#include "coordinator/attention.h"
#include "coordinator/router.h"

namespace moe {
namespace {

StatusOr<Matrix> TakeMatrix(Checkpoint& ckpt, const std::string& name, int64_t rows,
                            int64_t cols) {
  MOE_ASSIGN_OR_RETURN(TensorView t, ckpt.Take(name, {rows, cols}));
  return Matrix{t.data, t.dtype, rows, cols};
}

StatusOr<Matrix> TakeVector(Checkpoint& ckpt, const std::string& name, int64_t n) {
  MOE_ASSIGN_OR_RETURN(TensorView t, ckpt.Take(name, {n}));
  return Matrix{t.data, t.dtype, 1, n};
}

using Clock = std::chrono::steady_clock;

// Adds the seconds since `t` to `*sum` (when stats are kept) and restarts `t`.
void Lap(Clock::time_point& t, double* sum) {
  const auto now = Clock::now();
  if (sum) *sum += std::chrono::duration<double>(now - t).count();
  t = now;
}

}  // namespace

StatusOr<ModelWeights> LoadCoordinatorWeights(const ModelConfig& c, Checkpoint& ckpt) {
  ModelWeights w;
  const int64_t D = c.hidden, q_width = int64_t{c.heads} * c.head_dim,
                kv_width = int64_t{c.kv_heads} * c.head_dim;
  MOE_ASSIGN_OR_RETURN(w.embed, TakeMatrix(ckpt, names::Embed(), c.vocab, D));
  MOE_ASSIGN_OR_RETURN(w.final_norm, TakeVector(ckpt, names::FinalNorm(), D));
  if (c.tie_embeddings) {
    w.lm_head = w.embed;
    if (ckpt.tensors().count(names::LmHead())) MOE_RETURN_IF_ERROR(ckpt.Skip(names::LmHead()));
  } else {
    MOE_ASSIGN_OR_RETURN(w.lm_head, TakeMatrix(ckpt, names::LmHead(), c.vocab, D));
  }
  for (int l = 0; l < c.layers; ++l) {
    LayerWeights lw;
    MOE_ASSIGN_OR_RETURN(lw.attn_norm, TakeVector(ckpt, names::AttnNorm(l), D));
    MOE_ASSIGN_OR_RETURN(lw.wq, TakeMatrix(ckpt, names::Wq(l), q_width, D));
    MOE_ASSIGN_OR_RETURN(lw.wk, TakeMatrix(ckpt, names::Wk(l), kv_width, D));
    MOE_ASSIGN_OR_RETURN(lw.wv, TakeMatrix(ckpt, names::Wv(l), kv_width, D));
    MOE_ASSIGN_OR_RETURN(lw.wo, TakeMatrix(ckpt, names::Wo(l), D, q_width));
    MOE_ASSIGN_OR_RETURN(lw.ffn_norm, TakeVector(ckpt, names::FfnNorm(l), D));
    if (c.is_moe()) {
      MOE_ASSIGN_OR_RETURN(lw.router, TakeMatrix(ckpt, names::Router(l), c.num_experts, D));
    }
    w.layers.push_back(lw);
  }
  return w;
}

Model::Model(ModelConfig config, ModelWeights weights, ExpertBackend* experts, ThreadPool* pool)
    : config_(std::move(config)),
      w_(std::move(weights)),
      experts_(experts),
      pool_(pool),
      rope_(config_.head_dim, config_.rope_theta) {}

std::unique_ptr<RollingKvCache> Model::NewCache(int max_len) const {
  const int slots = config_.sliding_window > 0 ? std::min(config_.sliding_window, max_len) : max_len;
  return std::make_unique<RollingKvCache>(config_.layers, std::max(slots, 1),
                                          config_.kv_heads * config_.head_dim);
}

int64_t Model::dense_weight_bytes() const {
  int64_t bytes = w_.final_norm.bytes() + w_.lm_head.bytes();
  for (const LayerWeights& l : w_.layers)
    bytes += l.attn_norm.bytes() + l.wq.bytes() + l.wk.bytes() + l.wv.bytes() + l.wo.bytes() +
             l.ffn_norm.bytes() + l.router.bytes();
  return bytes;
}

void Model::Trace(const char* name, int layer, const float* data, int64_t rows, int64_t cols) {
  if (sink_) sink_(name, layer, data, rows, cols);
}

Status Model::Forward(const std::vector<int>& tokens, const std::vector<SequenceChunk>& chunks,
                      const std::vector<int>& logit_rows, float* logits) {
  const ModelConfig& c = config_;
  const int T = static_cast<int>(tokens.size());
  const int64_t D = c.hidden, V = c.vocab, H = c.heads, KV = c.kv_heads, hd = c.head_dim;
  const AttentionShape shape{c.heads, c.kv_heads, c.head_dim, c.sliding_window};
  x_.resize(T * D);
  h_.resize(T * D);
  q_.resize(T * H * hd);
  k_.resize(T * KV * hd);
  v_.resize(T * KV * hd);
  attn_.resize(T * H * hd);
  proj_.resize(T * D);
  moe_out_.resize(T * D);

  // x = embed(tokens)                                                    [T, D]
  for (int t = 0; t < T; ++t) {
    MOE_CHECK(tokens[t] >= 0 && tokens[t] < c.vocab, "token id out of range reached Forward");
    WidenRow(w_.embed, tokens[t], &x_[t * D]);
  }
  Trace("embed", -1, x_.data(), T, D);

  PhaseSeconds* times = stats_ ? &stats_->seconds : nullptr;
  auto t = Clock::now();
  for (int l = 0; l < c.layers; ++l) {
    const LayerWeights& lw = w_.layers[l];
    // h = rmsnorm(x); q, k, v = h Wq, h Wk, h Wv                           [T, H*hd], [T, KV*hd]
    RmsNorm(x_.data(), T, D, lw.attn_norm, c.rms_norm_eps, h_.data());
    MatMul(h_.data(), T, lw.wq, q_.data(), *pool_);
    MatMul(h_.data(), T, lw.wk, k_.data(), *pool_);
    MatMul(h_.data(), T, lw.wv, v_.data(), *pool_);
    // RoPE on q and k at each token's position, then attention chunk by chunk.
    int row = 0;
    for (const SequenceChunk& chunk : chunks) {
      for (int t = 0; t < chunk.length; ++t) {
        rope_.Apply(&q_[(row + t) * H * hd], c.heads, chunk.start_pos + t);
        rope_.Apply(&k_[(row + t) * KV * hd], c.kv_heads, chunk.start_pos + t);
      }
      AttendChunk(shape, &q_[row * H * hd], &k_[row * KV * hd], &v_[row * KV * hd], chunk.length,
                  chunk.start_pos, *chunk.cache, l, &attn_[row * H * hd], *pool_);
      row += chunk.length;
    }
    MOE_CHECK(row == T, "chunks do not cover the step's tokens");
    // x = x + attn Wo                                                     [T, D]
    MatMul(attn_.data(), T, lw.wo, proj_.data(), *pool_);
    for (int64_t i = 0; i < T * D; ++i) x_[i] += proj_[i];
    Trace("attn_out", l, proj_.data(), T, D);
    Lap(t, times ? &times->attention : nullptr);

    // h = rmsnorm(x); routes = router(h); y = experts(h); x = x + y        [T, D]
    RmsNorm(x_.data(), T, D, lw.ffn_norm, c.rms_norm_eps, h_.data());
    if (c.is_moe())
      Route(h_.data(), T, lw.router, c.experts_per_token, *pool_, router_logits_, &routes_);
    else
      RouteDense(T, &routes_);
    Lap(t, times ? &times->routing : nullptr);
    // Dispatch to the experts' ranks, run, combine (the backend times its own phases).
    MOE_RETURN_IF_ERROR(experts_->Run(l, h_.data(), T, routes_, moe_out_.data()));
    t = Clock::now();
    for (int64_t i = 0; i < T * D; ++i) x_[i] += moe_out_[i];
    Trace("moe_out", l, moe_out_.data(), T, D);
    Trace("residual", l, x_.data(), T, D);
  }

  // logits = lm_head(rmsnorm(x)) for the wanted rows                     [R, V]
  const int R = static_cast<int>(logit_rows.size());
  h_.resize(std::max<int64_t>(h_.size(), R * D));
  for (int r = 0; r < R; ++r) {
    MOE_CHECK(logit_rows[r] >= 0 && logit_rows[r] < T, "logit row out of range");
    RmsNorm(&x_[logit_rows[r] * D], 1, D, w_.final_norm, c.rms_norm_eps, &h_[r * D]);
  }
  MatMul(h_.data(), R, w_.lm_head, logits, *pool_);
  Trace("logits", -1, logits, R, V);
  Lap(t, times ? &times->lm_head : nullptr);
  if (stats_) stats_->layer_passes += c.layers;
  return Status::Ok();
}

}  // namespace moe
