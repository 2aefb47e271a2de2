// The coordinator's forward pass on a GPU: embeddings, norms, q/k/v/o projections (cuBLAS bf16),
// RoPE, attention over the paged KV cache in device memory, the router and lm_head on the
// device; the experts through ExpertParallel, which plans and describes the exchange, while the
// rows and answers travel either through host memory with its messages (host-staged) or
// straight between the GPUs over NCCL (common/cuda/nccl_link.h), the expert ranks' GPUs
// computing them (worker/gpu_experts.h); or, when this process holds every expert on the same
// GPU, on the device without leaving it. With two micro-batches one's attention runs while
// the workers compute the other's experts (coordinator/micro_batches.h). Sampling on the device
// (common/cuda/gpu_sampling.h).
// Index legend: T = step rows, D = hidden, H = heads, KV = kv heads, hd = head dim, V = vocab,
// E = experts, K = experts per token, R = logit rows.
#pragma once

#include <memory>
#include <vector>

#include "common/checkpoint.h"
#include "common/cuda/device_link.h"
#include "common/cuda/device_weights.h"
#include "common/cuda/gpu_attention.h"
#include "common/cuda/gpu_sampling.h"
#include "common/model_config.h"
#include "coordinator/expert_parallel.h"
#include "coordinator/model.h"
#include "worker/gpu_experts.h"

namespace moe {

class GpuForward : public DeviceForward {
 public:
  // Uploads every non-expert tensor (bf16) from the checkpoint to the current device.
  static StatusOr<std::unique_ptr<GpuForward>> Load(const ModelConfig& config, Checkpoint& ckpt);

  Status Forward(const std::vector<int>& tokens, const std::vector<SequenceChunk>& chunks,
                 const std::vector<int>& logit_rows, float* logits) override;
  Status Sample(const std::vector<Sampler*>& samplers, std::vector<int>* ids) override;
  int64_t dense_weight_bytes() const override { return weights_.bytes(); }
  void set_route_skew(RouteSkew* skew) override { skew_ = skew; }
  void set_micro_batches(int n) override { micro_batches_ = n; }
  void Attach(ExpertParallel* experts, RunStats* stats) override {
    experts_ = experts;
    stats_ = stats;
  }
  // This process's experts on the same GPU, all of them whole: with no other rank computing,
  // the routed rows never leave the device (LocalExperts).
  void UseLocalExperts(GpuExperts* experts) { local_ = experts; }
  // Every rank on a GPU of its own: the routed rows and the answers go between the GPUs over
  // this link (it outlives this object), not through host memory.
  void UseLink(gpu::DeviceLink* link) { link_ = link; }

 private:
  struct LayerWeights {
    const uint16_t* attn_norm = nullptr;  // [D]
    const uint16_t* wq = nullptr;         // [H*hd, D]
    const uint16_t* wk = nullptr;         // [KV*hd, D]
    const uint16_t* wv = nullptr;         // [KV*hd, D]
    const uint16_t* wo = nullptr;         // [D, H*hd]
    const uint16_t* ffn_norm = nullptr;   // [D]
    const uint16_t* router = nullptr;     // [E, D]; null for a dense model
  };
  // The rows of one KV pool in a step, as attention tiles (device pointers).
  struct PoolRows {
    gpu::PagedKv kv;
    const int32_t* tile_row0 = nullptr;
    const int32_t* tile_rows = nullptr;
    int decode_tiles = 0, prefill_tiles = 0;  // decode tiles first, then prefill tiles
    int max_decode_keys = 0;                  // the most keys a decode row sees
  };

  // One micro-batch of the step: rows [row0, row0 + rows), their attention tiles, and their
  // exchange, which lives from dispatch to combine while the other micro-batch's attention
  // runs, so its buffers are its own. (Attention's buffers are the step's, at row0.)
  struct MicroBatch {
    int row0 = 0, rows = 0;
    std::vector<PoolRows> pools;
    Routes routes;
    DispatchHandle handle;
    SumPlan combine;
    gpu::DeviceBuffer token_rows, xb, answers, sum_plan, moe;
    gpu::HostBuffer h_host, moe_host, slot_rows;
  };

  explicit GpuForward(const ModelConfig& config) : c_(config) {}
  // The device keys and values of `pool`, allocated on first use.
  StatusOr<gpu::PagedKv> Storage(KvBlockPool& pool);
  // Positions and block tables of the step, and each micro-batch's tiles, uploaded; fills
  // rows_, parts_ and each micro-batch's rows and pools.
  Status Describe(const std::vector<int>& tokens, const std::vector<SequenceChunk>& chunks,
                  const std::vector<int>& logit_rows);
  // x += attention(rmsnorm(x)); h = rmsnorm(x); routes = router(h), for one micro-batch.
  Status AttendAndRoute(int layer, MicroBatch& mb);
  Status Attention(int layer, const MicroBatch& mb);
  Status Route(int layer, MicroBatch& mb);
  // The micro-batch's rows to its experts: over the exchange (host-staged or linked), or on
  // local_ right away.
  Status Dispatch(int layer, int micro, MicroBatch& mb);
  // x += the experts' answers for the micro-batch (nothing left to do for local_).
  Status Combine(int layer, MicroBatch& mb);
  // The experts of one layer on local_: rows grouped by expert on the device, one GEMM per
  // expert and projection, and the weighted answers added to x.
  Status LocalExperts(int layer, MicroBatch& mb);
  // Over link_: the rows out to the other ranks' GPUs, then their answers back and summed.
  Status SendOverLink(int layer, MicroBatch& mb);
  Status ReceiveOverLink(int layer, MicroBatch& mb);
  // Whether this rank's GPU computes every expert, or the other ranks' GPUs over link_.
  bool local() const { return local_ != nullptr && !experts_->remote(); }
  bool linked() const { return link_ != nullptr && experts_->remote(); }

  ModelConfig c_;
  ExpertParallel* experts_ = nullptr;
  GpuExperts* local_ = nullptr;
  gpu::DeviceLink* link_ = nullptr;
  RunStats* stats_ = nullptr;
  RouteSkew* skew_ = nullptr;
  int micro_batches_ = 1;
  gpu::DeviceArena weights_;
  const uint16_t* embed_ = nullptr;       // [V, D]
  const uint16_t* final_norm_ = nullptr;  // [D]
  const uint16_t* lm_head_ = nullptr;     // [V, D]
  std::vector<LayerWeights> layers_;
  const float* inv_freq_ = nullptr;       // [hd/2]
  int* split_arrivals_ = nullptr;         // [kSplitBlocks] split decode's counts, zero between

  // The step.
  int T_ = 0, R_ = 0;
  gpu::StepRows rows_;
  const int32_t* ids_ = nullptr;        // [T]
  const int32_t* logit_rows_ = nullptr; // [R]
  MicroBatch micro_[2];
  int parts_ = 1;           // micro-batches in the step
  bool in_flight_ = false;  // a micro-batch is between its dispatch and its combine
  std::vector<int32_t> meta_host_;
  gpu::DeviceBuffer meta_, x_, h_, hb_, q_, k_, v_, attn_, router_logits_, route_ids_,
      route_weights_, logits_, expert_y_, split_;
  gpu::HostBuffer route_host_;
  gpu::DeviceSampler sampler_;
};

}  // namespace moe
