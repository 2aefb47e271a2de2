// A worker's expert slices on a GPU: w1, w3 and w2 of every held slice in bf16, and the FFN
// y = w2(silu(w1 x) * w3 x) through cuBLAS: w1 and w3 stacked, so one GEMM gives gate and up,
// then one for the down projection (the slices of a layer run one after another on the
// device's stream). A whole expert's down projection is one GEMM over all of its ffn columns;
// a slice's is one strided batched GEMM with a partial output per ffn block, as the wire format
// wants. The answers are added on the device (the job's sum plan), so only they go back: to the
// host (host-staged), or to rank 0 over the GPU link.
// Index legend: n = rows of a slice, D = hidden, Fs = the slice's ffn width, Fb = block width.
#pragma once

#include <memory>
#include <vector>

#include "common/checkpoint.h"
#include "common/cuda/device_weights.h"
#include "common/cuda/device_link.h"
#include "common/model_config.h"
#include "worker/expert_store.h"
#include "worker/expert_worker.h"

namespace moe {

class GpuExperts : public ExpertDevice {
 public:
  // Uploads the slices `layout` lists (an ExpertStore loaded without weights).
  static StatusOr<std::unique_ptr<GpuExperts>> Load(const ModelConfig& config, Checkpoint& ckpt,
                                                    const ExpertStore& layout);
  Status Run(const DeviceJob& job) override;
  bool linked() const override { return link_ != nullptr; }
  // Rows and answers over this link from now on (it outlives this object).
  void UseLink(gpu::DeviceLink* link) { link_ = link; }
  int64_t bytes() const { return arena_.bytes(); }

  // Whether every expert of every layer is held whole here (one rank holding the model).
  bool holds_every_expert() const { return every_expert_; }
  // Rows already on this device, grouped by expert: counts[e] rows of expert e, in id order.
  // y [n, D] = each row's expert FFN, with n = the sum of counts. Needs holds_every_expert().
  // Queued on the device's stream; nothing waits.
  Status RunGrouped(int layer, const uint16_t* xb, const std::vector<int>& counts, float* y);

 private:
  struct Slice {
    const uint16_t* w13 = nullptr; // [2 Fs, D]: the slice's w1 rows, then its w3 rows
    const uint16_t* w2 = nullptr;  // [D, Fs]
    int ffn = 0;                   // Fs
    int blocks = 0;
    bool whole = false;
  };
  GpuExperts() = default;
  Status RunJob(const DeviceJob& job);
  // Grows gate_up_ and act_ to fit the largest task (growing frees: do it before queueing).
  Status ReserveFfn(const std::vector<Slice>& slices, const std::vector<DeviceTask>& tasks);
  // out = the tasks' FFNs over their rows xb (the tasks end to end; outputs [n, D] whole or
  // [blocks, n, D]), one task after another through gate_up_ and act_ (ReserveFfn first).
  Status Experts(const std::vector<Slice>& slices, const std::vector<DeviceTask>& tasks,
                 const uint16_t* xb, float* out);

  int D_ = 0, Fb_ = 0;
  std::vector<std::vector<Slice>> layers_;  // [L][held], the store's order
  std::vector<std::vector<int>> whole_;     // [L][E]: index into layers_[l] of the whole expert
  bool every_expert_ = false;
  gpu::DeviceLink* link_ = nullptr;
  gpu::DeviceArena arena_;
  gpu::DeviceBuffer x_, rows_, index_, xb_, gate_up_, act_, out_, answers_, plan_;
};

}  // namespace moe
