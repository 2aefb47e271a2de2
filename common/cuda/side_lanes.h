// Streams beside the device's stream, for independent work side by side (the experts' GEMMs of
// a layer): Fork, queue each piece on a lane (gpu_ops.h's Lane), Join. Each lane has a cuBLAS
// handle of its own: handles used on streams running at once must not share a workspace.
#pragma once

#include <memory>
#include <vector>

#include "common/cuda/gpu_ops.h"
#include "common/status.h"

struct CUevent_st;

namespace moe::gpu {

class SideLanes {
 public:
  static StatusOr<std::unique_ptr<SideLanes>> Create(int lanes);
  SideLanes(const SideLanes&) = delete;
  SideLanes& operator=(const SideLanes&) = delete;
  ~SideLanes();

  int size() const { return static_cast<int>(lanes_.size()); }
  const Lane& lane(int i) const { return lanes_[i]; }
  // Lanes 0 .. n-1 wait for the work queued on the device's stream so far.
  Status Fork(int n);
  // The device's stream waits for the work queued on lanes 0 .. n-1.
  Status Join(int n);

 private:
  SideLanes() = default;
  std::vector<Lane> lanes_;
  std::vector<CUevent_st*> done_;  // [lanes] recorded on each lane by Join
  CUevent_st* forked_ = nullptr;   // recorded on the device's stream by Fork
};

}  // namespace moe::gpu
