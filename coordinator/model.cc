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
  return ckpt.TakeMatrix(name, {rows, cols});
}

StatusOr<Matrix> TakeVector(Checkpoint& ckpt, const std::string& name, int64_t n) {
  MOE_ASSIGN_OR_RETURN(TensorView t, ckpt.Take(name, {n}));
  return Matrix{t.data, t.dtype, 1, n};
}

constexpr int kDeviceBlockSize = 16;  // positions per KV block of a device cache

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

Model::Model(ModelConfig config, ModelWeights weights, ExpertParallel* experts, ThreadPool* pool)
    : config_(std::move(config)),
      w_(std::move(weights)),
      experts_(experts),
      pool_(pool),
      rope_(config_.head_dim, config_.rope_theta) {}

void Model::set_device(std::unique_ptr<DeviceForward> device) {
  device_ = std::move(device);
  if (device_) {
    device_->set_route_skew(&skew_);
    device_->Attach(experts_, stats_);
    device_->set_micro_batches(micro_batches_);
  }
}

std::unique_ptr<KvCache> Model::NewCache(int max_len) const {
  return std::move(NewCaches(1, max_len)[0]);
}

std::vector<std::unique_ptr<KvCache>> Model::NewCaches(int count, int max_len) const {
  const int width = config_.kv_heads * config_.head_dim;
  if (device_)
    return PagedKvCache::Group(count, config_.layers, width, kDeviceBlockSize, max_len,
                               config_.sliding_window);
  const int slots = config_.sliding_window > 0 ? std::min(config_.sliding_window, max_len) : max_len;
  std::vector<std::unique_ptr<KvCache>> caches;
  for (int i = 0; i < count; ++i)
    caches.push_back(std::make_unique<RollingKvCache>(config_.layers, std::max(slots, 1), width));
  return caches;
}

Status Model::Sample(const std::vector<Sampler*>& samplers, const float* logits,
                     std::vector<int>* ids) {
  if (device_) return device_->Sample(samplers, ids);
  MOE_CHECK(logits != nullptr || samplers.empty(), "CPU sampling needs the logits");
  ids->resize(samplers.size());
  for (size_t r = 0; r < samplers.size(); ++r)
    (*ids)[r] = samplers[r]->Next(logits + r * static_cast<size_t>(config_.vocab), config_.vocab);
  return Status::Ok();
}

int64_t Model::dense_weight_bytes() const {
  if (device_) return device_->dense_weight_bytes();
  int64_t bytes = w_.final_norm.bytes() + w_.lm_head.bytes();
  for (const LayerWeights& l : w_.layers)
    bytes += l.attn_norm.bytes() + l.wq.bytes() + l.wk.bytes() + l.wv.bytes() + l.wo.bytes() +
             l.ffn_norm.bytes() + l.router.bytes();
  return bytes;
}

void Model::Trace(const char* name, int layer, const float* data, int64_t rows, int64_t cols) {
  if (sink_) sink_(name, layer, data, rows, cols);
}

void Model::AttendAndRoute(int l, MicroBatch& mb) {
  const ModelConfig& c = config_;
  const LayerWeights& lw = w_.layers[l];
  const int64_t D = c.hidden, H = c.heads, KV = c.kv_heads, hd = c.head_dim;
  const AttentionShape shape{c.heads, c.kv_heads, c.head_dim, c.sliding_window};
  const int64_t r0 = mb.row0, T = mb.rows;
  PhaseSeconds* times = stats_ ? &stats_->seconds : nullptr;
  auto t = Clock::now();
  // h = rmsnorm(x); q, k, v = h Wq, h Wk, h Wv                           [T, H*hd], [T, KV*hd]
  RmsNorm(&x_[r0 * D], T, D, lw.attn_norm, c.rms_norm_eps, &h_[r0 * D]);
  const MatMulJob qkv[3] = {{&h_[r0 * D], T, &lw.wq, &q_[r0 * H * hd]},
                            {&h_[r0 * D], T, &lw.wk, &k_[r0 * KV * hd]},
                            {&h_[r0 * D], T, &lw.wv, &v_[r0 * KV * hd]}};
  MatMulMany(qkv, 3, *pool_);
  // RoPE on q and k at each token's position, then attention chunk by chunk.
  int64_t row = r0;
  for (const SequenceChunk& chunk : mb.chunks) {
    for (int i = 0; i < chunk.length; ++i) {
      rope_.Apply(&q_[(row + i) * H * hd], c.heads, chunk.start_pos + i);
      rope_.Apply(&k_[(row + i) * KV * hd], c.kv_heads, chunk.start_pos + i);
    }
    AttendChunk(shape, &q_[row * H * hd], &k_[row * KV * hd], &v_[row * KV * hd], chunk.length,
                chunk.start_pos, *chunk.cache, l, &attn_[row * H * hd], *pool_);
    row += chunk.length;
  }
  MOE_CHECK(row == r0 + T, "chunks do not cover the micro-batch's rows");
  // x = x + attn Wo                                                     [T, D]
  MatMul(&attn_[r0 * H * hd], T, lw.wo, &proj_[r0 * D], *pool_);
  for (int64_t i = r0 * D; i < (r0 + T) * D; ++i) x_[i] += proj_[i];
  Lap(t, times ? &times->attention : nullptr);
  // h = rmsnorm(x); routes = router(h)                                   [T, D], [T, K]
  RmsNorm(&x_[r0 * D], T, D, lw.ffn_norm, c.rms_norm_eps, &h_[r0 * D]);
  if (c.is_moe()) {
    Route(&h_[r0 * D], static_cast<int>(T), lw.router, c.experts_per_token, *pool_,
          router_logits_, &mb.routes);
    skew_.Apply(&mb.routes);
  } else
    RouteDense(static_cast<int>(T), &mb.routes);
  Lap(t, times ? &times->routing : nullptr);
}

Status Model::CombineInto(int l, MicroBatch& mb) {
  const int64_t D = config_.hidden, r0 = mb.row0;
  const auto t = Clock::now();
  MOE_RETURN_IF_ERROR(experts_->Combine(mb.handle, &moe_out_[r0 * D]));
  for (int64_t i = r0 * D; i < (r0 + mb.rows) * D; ++i) x_[i] += moe_out_[i];
  if (stats_) stats_->seconds.moe_wait += std::chrono::duration<double>(Clock::now() - t).count();
  return Status::Ok();
}

Status Model::Forward(const std::vector<int>& tokens, const std::vector<SequenceChunk>& chunks,
                      const std::vector<int>& logit_rows, float* logits) {
  if (device_) return device_->Forward(tokens, chunks, logit_rows, logits);
  MOE_CHECK(logits != nullptr || logit_rows.empty(), "the CPU forward pass writes logits");
  const ModelConfig& c = config_;
  const int T = static_cast<int>(tokens.size());
  const int64_t D = c.hidden, V = c.vocab, H = c.heads, KV = c.kv_heads, hd = c.head_dim;
  const auto t_start = Clock::now();
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

  experts_->BeginStep();
  std::vector<MicroBatch> mbs;
  for (MicroBatchRows& part : SplitMicroBatches(chunks, T, micro_batches_))
    mbs.push_back({std::move(part), {}, {}});
  int in_flight = 0;  // micro-batches dispatched and not yet combined
  auto dispatch = [&](int l, int i) -> Status {
    MicroBatch& mb = mbs[i];
    const auto t = Clock::now();
    // The workers may share this host's cores: idle pool threads sleep from now on.
    if (experts_->remote()) pool_->Park();
    auto handle = experts_->Dispatch(l, i, static_cast<int>(mbs.size()), &h_[mb.row0 * D],
                                     mb.rows, mb.routes);
    if (!handle.ok()) return handle.status();
    mb.handle = std::move(handle).value();
    ++in_flight;
    if (stats_) stats_->seconds.moe_wait += std::chrono::duration<double>(Clock::now() - t).count();
    return Status::Ok();
  };
  const int parts = static_cast<int>(mbs.size());
  Status layers = RunMicroBatches(
      c.layers, parts,
      [&](int l, int i) {
        experts_->Attending(l);
        AttendAndRoute(l, mbs[i]);  // x += attention; routes
        return Status::Ok();
      },
      dispatch,  // rows to the experts' ranks
      [&](int l, int i) {
        --in_flight;
        MOE_RETURN_IF_ERROR(CombineInto(l, mbs[i]));  // x += their answers, in token order
        if (i + 1 == parts) {
          Trace("moe_out", l, moe_out_.data(), T, D);
          Trace("residual", l, x_.data(), T, D);
        }
        return Status::Ok();
      });
  // A micro-batch's workers still wait mid-exchange (the other one failed before its
  // dispatch, say): the exchange ends, and Runtime ends the job.
  if (!layers.ok() && in_flight > 0) return experts_->Fail(layers);
  MOE_RETURN_IF_ERROR(layers);

  // logits = lm_head(rmsnorm(x)) for the wanted rows                     [R, V]
  auto t = Clock::now();
  const int R = static_cast<int>(logit_rows.size());
  h_.resize(std::max<int64_t>(h_.size(), R * D));
  for (int r = 0; r < R; ++r) {
    MOE_CHECK(logit_rows[r] >= 0 && logit_rows[r] < T, "logit row out of range");
    RmsNorm(&x_[logit_rows[r] * D], 1, D, w_.final_norm, c.rms_norm_eps, &h_[r * D]);
  }
  MatMul(h_.data(), R, w_.lm_head, logits, *pool_);
  Trace("logits", -1, logits, R, V);
  if (stats_) {
    Lap(t, &stats_->seconds.lm_head);
    stats_->layer_passes += c.layers;
    stats_->seconds.forward += std::chrono::duration<double>(Clock::now() - t_start).count();
  }
  return Status::Ok();
}

}  // namespace moe
