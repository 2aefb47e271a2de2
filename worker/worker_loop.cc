#include "worker/worker_loop.h"

#include <cstring>

#include "common/wire_format.h"

namespace moe {

Status ServeExperts(Transport& transport, ExpertWorker& worker, double rank_timeout_seconds) {
  const int R = transport.size();
  ByteRuns nothing, recv, next, reply, next_reply;
  nothing.counts.assign(R, 0);
  // Receives one dispatch (idle: no deadline, a sleeping wait) and checks its header.
  auto receive = [&](ByteRuns* into, double timeout, wire::DispatchHeader* header) -> Status {
    MOE_RETURN_IF_ERROR(transport.Exchange(nothing, into, {"dispatch wait"}, timeout));
    if (into->counts[0] < static_cast<int64_t>(sizeof(*header)))
      return Internal("the coordinator sent a dispatch without a header");
    std::memcpy(header, into->at(0), sizeof(*header));
    if (header->magic != wire::kDispatchMagic) return Internal("bad dispatch magic");
    return Status::Ok();
  };
  auto answer = [&](const ByteRuns& msg, const wire::DispatchHeader& h, ByteRuns* out) {
    out->data.clear();
    out->counts.assign(R, 0);
    Status s = worker.Process(h.layer, h.step, h.rows, h.link != 0, msg.at(0) + sizeof(h),
                              msg.counts[0] - sizeof(h), &out->data);
    out->counts[0] = static_cast<int64_t>(out->data.size());
    return s;
  };
  auto send = [&](const ByteRuns& out, const wire::DispatchHeader& h, double timeout) {
    return transport.Exchange(out, &recv, {"combine", h.layer, h.step}, timeout);
  };
  for (;;) {
    wire::DispatchHeader header;
    MOE_RETURN_IF_ERROR(receive(&recv, -1, &header));
    if (header.command == wire::kStop) return Status::Ok();
    MOE_RETURN_IF_ERROR(answer(recv, header, &reply));
    if (header.micro_batches == 2) {
      // Ping-pong: A was computed while the coordinator ran B's attention; now B's rows, A's
      // answer, then B's answer. The waits for B's rows and for taking B's answer span rank 0's
      // attention, so they have no deadline (rank 0's own deadlines find a dead worker).
      wire::DispatchHeader second;
      MOE_RETURN_IF_ERROR(receive(&next, -1, &second));
      if (second.command != wire::kLayer || second.micro_batch != 1 || second.layer != header.layer)
        return Internal("expected micro-batch 1 of layer " + std::to_string(header.layer));
      MOE_RETURN_IF_ERROR(send(reply, header, rank_timeout_seconds));
      MOE_RETURN_IF_ERROR(answer(next, second, &next_reply));
      MOE_RETURN_IF_ERROR(send(next_reply, second, -1));
    } else {
      MOE_RETURN_IF_ERROR(send(reply, header, rank_timeout_seconds));
    }
  }
}

}  // namespace moe
