// What the GPU path moves between ranks' GPUs each layer, whatever carries it: rank 0 sends
// each worker its rows and receives its answers; a worker receives its rows and sends its
// answers (common/wire_format.h). Every rank calls Receive and Send once a layer, moves or
// none, so a carrier may pair them up collectively. Carriers: NCCL (nccl_link.h), and MPI
// through host memory (mpi_link.h), which runs the same protocol where ranks share a GPU.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "common/transport.h"

namespace moe::gpu {

class DeviceLink : public GpuLink {
 public:
  struct Move {
    void* data = nullptr;  // device memory
    int64_t bytes = 0;
    int peer = 0;
  };
  // How long a send may wait for its peer: the rank timeout, or none, for a worker's answers
  // that rank 0 takes only after the other micro-batch's attention (ping-pong); rank 0's own
  // deadlines find a dead worker.
  enum class Deadline { kRankTimeout, kNone };
  // Queue (or carry out) the sends or receives, after the work queued so far on the device's
  // stream; later work on the device's stream sees them done. A receive waits at most the
  // rank timeout.
  virtual Status Send(const std::vector<Move>& moves, const ExchangeLabel& label,
                      Deadline deadline) = 0;
  virtual Status Receive(const std::vector<Move>& moves, const ExchangeLabel& label) = 0;
  // Waits on the host until every queued move is done.
  virtual Status Wait(const ExchangeLabel& label, Deadline deadline) = 0;
  // Ends the link after a failure elsewhere while moves may be queued; it is dead for good.
  virtual void Abort() = 0;
};

}  // namespace moe::gpu
