// A worker's expert slices on a GPU: w1, w3 and w2 of every held slice in bf16, and the FFN
// y = w2(silu(w1 x) * w3 x) through cuBLAS: w1 and w3 stacked, so one GEMM gives gate and up,
// then one for the down projection. The slices of a layer run side by side on a few streams
// (the k-th slice with rows on lane k % lanes), each lane with scratch of its own; each
// slice's output has its own place, so the results do not depend on the lanes.
// A whole expert's down projection is one GEMM over all of its ffn columns;
// a slice's is one strided batched GEMM with a partial output per ffn block, as the wire format
// wants. The answers are added on the device (the job's sum plan), so only they go back: to the
// host (host-staged), or to rank 0 over the GPU link.
// Index legend: n = rows of a slice, D = hidden, Fs = the slice's ffn width, Fb = block width.
#pragma once

#include <memory>
#include <vector>

#include "common/checkpoint.h"
#include "common/cuda/device_link.h"
#include "common/cuda/device_weights.h"
#include "common/cuda/side_lanes.h"
#include "common/model_config.h"
#include "worker/expert_store.h"
#include "worker/expert_worker.h"

namespace moe {

class GpuExperts : public ExpertDevice {
 public:
  static constexpr int kMaxLanes = 8;
  // Uploads the slices `layout` lists (an ExpertStore loaded without weights); a layer's
  // slices run on `lanes` streams (1 .. kMaxLanes; 1: one after another on the device's).
  static StatusOr<std::unique_ptr<GpuExperts>> Load(const ModelConfig& config, Checkpoint& ckpt,
                                                    const ExpertStore& layout, int lanes);
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
  // Lanes the tasks run on: one per task with rows, at most the lanes there are.
  int LanesFor(const std::vector<DeviceTask>& tasks) const;
  // Grows each lane's gate_up_ and act_ to fit its largest task (growing frees: do it before
  // queueing).
  Status ReserveFfn(const std::vector<Slice>& slices, const std::vector<DeviceTask>& tasks);
  // out = the tasks' FFNs over their rows xb (the tasks end to end; outputs [n, D] whole or
  // [blocks, n, D]), the k-th task with rows on lane k % LanesFor(tasks), each lane through
  // its gate_up_ and act_ (ReserveFfn first). Joined back to the device's stream.
  Status Experts(const std::vector<Slice>& slices, const std::vector<DeviceTask>& tasks,
                 const uint16_t* xb, float* out);
  // One slice's FFN queued `on` a stream, through lane `lane`'s scratch: out = [n, D] whole,
  // [blocks, n, D] sliced.
  Status Ffn(const Slice& s, int n, const uint16_t* xb, int lane, const gpu::Lane& on,
             float* out);

  int D_ = 0, Fb_ = 0;
  std::vector<std::vector<Slice>> layers_;  // [L][held], the store's order
  std::vector<std::vector<int>> whole_;     // [L][E]: index into layers_[l] of the whole expert
  bool every_expert_ = false;
  gpu::DeviceLink* link_ = nullptr;
  std::unique_ptr<gpu::SideLanes> side_;  // null: one lane, the device's stream
  gpu::DeviceArena arena_;
  gpu::DeviceBuffer x_, rows_, index_, xb_, out_, answers_, plan_;
  gpu::DeviceBuffer gate_up_[kMaxLanes], act_[kMaxLanes];  // per lane: [n, 2 Fs] f32, [n, Fs]
};

}  // namespace moe
