#include "common/cuda/mpi_link.h"

#include <algorithm>

#include "common/cuda/gpu_ops.h"

namespace moe::gpu {
namespace {

Status Lost() {
  return Status(StatusCode::kUnavailable, "the GPU link failed earlier; restart the job");
}

}  // namespace

Status MpiLink::Send(const std::vector<Move>& moves, const ExchangeLabel& label,
                     Deadline deadline) {
  if (dead_) return Lost();
  // The rows (or answers) are ready once the device's queued work is done; then each peer's
  // bytes go into its run of the message, in rank order.
  MOE_RETURN_IF_ERROR(Synchronize());
  std::vector<Move> by_peer = moves;
  std::sort(by_peer.begin(), by_peer.end(),
            [](const Move& a, const Move& b) { return a.peer < b.peer; });
  send_.counts.assign(t_->size(), 0);
  send_.data.clear();
  for (const Move& m : by_peer) {
    if (send_.counts[m.peer] != 0) return Internal("two moves to one rank in one GPU link send");
    const size_t at = send_.data.size();
    send_.data.resize(at + m.bytes);
    MOE_RETURN_IF_ERROR(CopyToHost(send_.data.data() + at, m.data, m.bytes));
    send_.counts[m.peer] = m.bytes;
  }
  Status s =
      t_->Exchange(send_, &recv_, label, deadline == Deadline::kNone ? -1 : timeout_);
  if (!s.ok()) dead_ = true;
  return s;
}

Status MpiLink::Receive(const std::vector<Move>& moves, const ExchangeLabel& label) {
  if (dead_) return Lost();
  send_.counts.assign(t_->size(), 0);
  send_.data.clear();
  if (Status s = t_->Exchange(send_, &recv_, label, timeout_); !s.ok()) {
    dead_ = true;
    return s;
  }
  // Every byte that came must be one a move expects, and every move must be filled whole.
  std::vector<int64_t> expected(t_->size(), 0);
  for (const Move& m : moves) {
    if (expected[m.peer] != 0) return Internal("two moves from one rank in one GPU link receive");
    expected[m.peer] = m.bytes;
  }
  for (int r = 0; r < t_->size(); ++r)
    if (recv_.counts[r] != expected[r]) {
      dead_ = true;
      return Internal("rank " + std::to_string(r) + " sent " + std::to_string(recv_.counts[r]) +
                      " bytes over the GPU link in the " + label.Text() + "; " +
                      std::to_string(expected[r]) +
                      " were expected");
    }
  for (const Move& m : moves)
    if (m.bytes > 0) MOE_RETURN_IF_ERROR(CopyToDevice(m.data, recv_.at(m.peer), m.bytes));
  return Status::Ok();
}

Status MpiLink::Wait(const ExchangeLabel&, Deadline) { return dead_ ? Lost() : Status::Ok(); }

}  // namespace moe::gpu
