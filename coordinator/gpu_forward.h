// The coordinator's forward pass on a GPU: embeddings, norms, q/k/v/o projections (cuBLAS bf16),
// RoPE, attention over the paged KV cache in device memory, the router and lm_head on the
// device; the experts through ExpertParallel, which plans and describes the exchange, while the
// rows and answers travel either through host memory with its messages (host-staged) or
// straight between the GPUs over NCCL (common/cuda/nccl_link.h), the expert ranks' GPUs
// computing them (worker/gpu_experts.h); or, when this process holds every expert on the same
// GPU, on the device without leaving it. Sampling on the device (common/cuda/gpu_sampling.h).
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

  explicit GpuForward(const ModelConfig& config) : c_(config) {}
  // The device keys and values of `pool`, allocated on first use.
  StatusOr<gpu::PagedKv> Storage(KvBlockPool& pool);
  // Positions, block tables and tiles of the step, uploaded; fills rows_ and pools_.
  Status Describe(const std::vector<int>& tokens, const std::vector<SequenceChunk>& chunks,
                  const std::vector<int>& logit_rows);
  Status Attention(int layer);
  Status Experts(int layer);
  // The experts of one layer on local_: rows grouped by expert on the device, one GEMM per
  // expert and projection, and the weighted answers added to x.
  Status LocalExperts(int layer, const float* h);
  // The experts of one layer on the other ranks' GPUs, rows and answers over link_.
  Status LinkedExperts(int layer, const float* h);
  Status ExchangeOverLink(int layer, const float* h, const DispatchHandle& handle);

  ModelConfig c_;
  ExpertParallel* experts_ = nullptr;
  GpuExperts* local_ = nullptr;
  gpu::DeviceLink* link_ = nullptr;
  RunStats* stats_ = nullptr;
  RouteSkew* skew_ = nullptr;
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
  std::vector<PoolRows> pools_;
  std::vector<int32_t> meta_host_;
  gpu::DeviceBuffer meta_, x_, h_, hb_, q_, k_, v_, attn_, moe_, router_logits_, route_ids_,
      route_weights_, logits_, plan_, expert_x_, expert_y_, answers_, sum_plan_, split_;
  gpu::HostBuffer route_host_, h_host_, moe_host_, plan_host_;
  Routes routes_;
  SumPlan combine_;  // the layer's combine (LocalExperts, LinkedExperts)
  gpu::DeviceSampler sampler_;
};

}  // namespace moe
