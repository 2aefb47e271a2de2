// The coordinator's half of the model: embeddings, attention, norms, routers and lm_head,
// with the experts behind an ExpertBackend. One Forward for Mixtral and dense Mistral.
// Index legend: T = tokens in the step, D = hidden, H = heads, KV = kv heads, hd = head dim,
// V = vocab, R = rows whose logits are wanted.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/checkpoint.h"
#include "common/kernels.h"
#include "common/model_config.h"
#include "coordinator/expert_parallel.h"
#include "coordinator/kv_cache.h"
#include "coordinator/micro_batches.h"
#include "coordinator/rope.h"
#include "coordinator/route_skew.h"
#include "coordinator/run_stats.h"
#include "coordinator/sampler.h"

namespace moe {

struct LayerWeights {
  Matrix attn_norm;  // [D]
  Matrix wq;         // [H*hd, D]
  Matrix wk;         // [KV*hd, D]
  Matrix wv;         // [KV*hd, D]
  Matrix wo;         // [D, H*hd]
  Matrix ffn_norm;   // [D]
  Matrix router;     // [E, D]; empty for a dense model
};

struct ModelWeights {
  Matrix embed;       // [V, D]
  Matrix final_norm;  // [D]
  Matrix lm_head;     // [V, D] (the embedding when tied)
  std::vector<LayerWeights> layers;
};

// Takes every non-expert tensor; the experts are left to the expert backend's loader.
StatusOr<ModelWeights> LoadCoordinatorWeights(const ModelConfig& config, Checkpoint& ckpt);

// Named intermediate values, for finding where a mismatch against a reference begins.
// Called with (name, layer or -1, data [rows, cols]).
using ActivationSink =
    std::function<void(const std::string&, int, const float*, int64_t, int64_t)>;

// The forward pass on a device (coordinator/gpu_forward.h): Model::Forward's contract, with the
// step's logits kept on the device for Sample.
class DeviceForward {
 public:
  virtual ~DeviceForward() = default;
  // logits may be null: they stay on the device only.
  virtual Status Forward(const std::vector<int>& tokens, const std::vector<SequenceChunk>& chunks,
                         const std::vector<int>& logit_rows, float* logits) = 0;
  // Model::Sample's contract, from the logits the last Forward left on the device.
  virtual Status Sample(const std::vector<Sampler*>& samplers, std::vector<int>* ids) = 0;
  virtual int64_t dense_weight_bytes() const = 0;
  virtual void set_route_skew(RouteSkew* skew) = 0;
  // Where the routed rows go, and where phase times are added (null: none).
  virtual void Attach(ExpertParallel* experts, RunStats* stats) = 0;
  // Model::set_micro_batches's contract.
  virtual void set_micro_batches(int n) = 0;
};

class Model {
 public:
  Model(ModelConfig config, ModelWeights weights, ExpertParallel* experts, ThreadPool* pool);

  const ModelConfig& config() const { return config_; }
  // Bytes of the weights one step reads besides the experts: attention, norms, routers, lm_head.
  int64_t dense_weight_bytes() const;

  // tokens [T], the chunks laid end to end; logits [R, V] for the step rows in `logit_rows`.
  // On a device, logits may be null (they stay there for Sample).
  Status Forward(const std::vector<int>& tokens, const std::vector<SequenceChunk>& chunks,
                 const std::vector<int>& logit_rows, float* logits);
  // One token per sampler, drawn from the last n = samplers.size() logit rows of the last
  // Forward (samplers[i] from row R - n + i): on the device where the logits are there, else
  // from `logits` [n, V] on the host (those rows).
  Status Sample(const std::vector<Sampler*>& samplers, const float* logits, std::vector<int>* ids);

  // Runs the whole pass on a device instead (the weights above are then empty).
  void set_device(std::unique_ptr<DeviceForward> device);
  bool on_device() const { return device_ != nullptr; }

  void set_activation_sink(ActivationSink sink) { sink_ = std::move(sink); }
  void set_stats(RunStats* stats) {
    stats_ = stats;
    if (device_) device_->Attach(experts_, stats_);
  }
  // 2: split each step into two micro-batches and overlap one's attention with the other's
  // experts (ping-pong); 1: one batch. The numbers are the same either way.
  void set_micro_batches(int n) {
    micro_batches_ = n;
    if (device_) device_->set_micro_batches(n);
  }
  // Scaling experiments only: replace the router's choices (coordinator/route_skew.h).
  void set_route_skew(RouteSkew skew) {
    skew_ = std::move(skew);
    if (device_) device_->set_route_skew(&skew_);
  }

  // A cache for one sequence of up to `max_len` tokens (rolling when there is a window; paged
  // on a device).
  std::unique_ptr<KvCache> NewCache(int max_len) const;
  // `count` of them (on a device, over one shared pool: a step's sequences in one kernel).
  std::vector<std::unique_ptr<KvCache>> NewCaches(int count, int max_len) const;

 private:
  // The rows of a step that travel together to the experts.
  struct MicroBatch : MicroBatchRows {
    Routes routes;
    DispatchHandle handle;
  };
  // x += attention(rmsnorm(x)); h = rmsnorm(x); routes = router(h), for one micro-batch.
  void AttendAndRoute(int layer, MicroBatch& mb);
  // x += the experts' answer for one micro-batch.
  Status CombineInto(int layer, MicroBatch& mb);
  void Trace(const char* name, int layer, const float* data, int64_t rows, int64_t cols);

  ModelConfig config_;
  ModelWeights w_;
  ExpertParallel* experts_;
  int micro_batches_ = 1;
  RouteSkew skew_;
  ThreadPool* pool_;
  Rope rope_;
  ActivationSink sink_;
  RunStats* stats_ = nullptr;
  std::unique_ptr<DeviceForward> device_;
  // Step buffers, reused across steps.
  std::vector<float> x_, h_, q_, k_, v_, attn_, proj_, moe_out_, router_logits_;
};

}  // namespace moe
