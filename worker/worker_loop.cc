#include "worker/worker_loop.h"

#include <cstring>

#include "common/wire_format.h"

namespace moe {

Status ServeExperts(Transport& transport, ExpertWorker& worker, double rank_timeout_seconds) {
  const int R = transport.size();
  ByteRuns nothing, recv, reply;
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
    Status s = worker.Process(h, msg.at(0) + sizeof(h), msg.counts[0] - sizeof(h), &out->data);
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
    // Ping-pong: rank 0 takes the answer after the other micro-batch's attention, so that wait
    // has no deadline (rank 0's own deadlines find a dead worker).
    MOE_RETURN_IF_ERROR(
        send(reply, header, header.micro_batches == 2 ? -1 : rank_timeout_seconds));
  }
}

}  // namespace moe
