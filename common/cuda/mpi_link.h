// The GPU link's protocol carried by the Transport through host memory: each Send or Receive
// is one exchange (rank 0 with every worker), its bytes copied off and onto the device around
// it. It runs the NCCL path's code with only the carrier changed, where NCCL cannot go (ranks
// sharing a GPU: --gpu-exchange mpi-link), with the Transport's deadlines and fault reports.
#pragma once

#include <vector>

#include "common/cuda/device_link.h"

namespace moe::gpu {

class MpiLink : public DeviceLink {
 public:
  MpiLink(Transport* transport, double timeout_seconds)
      : t_(transport), timeout_(timeout_seconds) {}
  Status Send(const std::vector<Move>& moves, const ExchangeLabel& label,
              Deadline deadline) override;
  Status Receive(const std::vector<Move>& moves, const ExchangeLabel& label) override;
  // Every move is done when Send and Receive return.
  Status Wait(const ExchangeLabel&, Deadline) override;
  void Abort() override { dead_ = true; }

 private:
  Transport* t_;
  double timeout_;
  bool dead_ = false;
  ByteRuns send_, recv_;
};

}  // namespace moe::gpu
