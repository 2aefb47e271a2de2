// The GPU link over NCCL: one communicator for the job, its id made by rank 0 and handed to the
// others over the Transport. Rows and answers move with grouped ncclSend/ncclRecv on the link's
// own stream, ordered after the device's work with events. NCCL is loaded with dlopen when the
// link is first wanted, so a machine without it still runs everything else on its GPU.
//
// Counts travel first, in the Transport's messages (common/wire_format.h), so both sides of
// every move know its size before it is queued. NCCL itself has no deadline: Wait gives it the
// rank timeout, then aborts the communicator, and the job must restart (as after any lost rank).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/cuda/device_link.h"
#include "common/status.h"
#include "common/transport.h"

namespace moe::gpu {

class NcclLink : public DeviceLink {
 public:
  // "" when NCCL can be loaded here, else why not.
  static std::string Unavailable();
  // Rank 0: the id of a new communicator, as bytes.
  static StatusOr<std::string> NewId();
  // Every rank at once, on its current device: joins the communicator `id` as the
  // Transport's rank among its ranks, and connects rank 0 with every other rank (a byte each
  // way). Each of the two ends after `timeout_seconds` with an error (kUnavailable: a rank
  // died or hangs, and the caller must end the job, as nothing collective can follow).
  static StatusOr<std::unique_ptr<NcclLink>> Open(const std::string& id, const Transport& t,
                                                  double timeout_seconds);
  ~NcclLink() override;

  // Queues the sends (or receives) as one group on the link's stream, after the work queued so
  // far on the device's stream; later work on the device's stream waits for them.
  Status Send(const std::vector<Move>& moves, const ExchangeLabel&, Deadline) override {
    return Queue(moves, true);
  }
  Status Receive(const std::vector<Move>& moves, const ExchangeLabel&) override {
    return Queue(moves, false);
  }
  // Waits on the host until every queued move is done. After `timeout_seconds` (unless the
  // deadline is none) or an NCCL error it aborts the communicator: the link is dead for good,
  // and the status says so, naming the ranks the unfinished moves were with (NCCL does not
  // say which of them failed).
  Status Wait(const ExchangeLabel& label, Deadline deadline) override;
  // Ends the communicator after a failure elsewhere while moves are queued: they end unfinished
  // (the device's stream stops waiting for them), and the link is dead for good.
  void Abort() override;

 private:
  struct State;
  explicit NcclLink(std::unique_ptr<State> state);
  // Open's steps, on a thread of their own; `now` names each step as it starts.
  Status JoinAndConnect(const std::string& id, int rank, int ranks,
                        const std::function<void(std::string)>& now);
  // After the join: the link's stream and events, then rank 0's connection with the workers.
  Status Connect(int rank, int ranks, const std::function<void(std::string)>& now);
  Status Queue(const std::vector<Move>& moves, bool send);

  std::unique_ptr<State> s_;
};

}  // namespace moe::gpu
