#include "worker/worker_loop.h"

#include <cstring>

#include "common/wire_format.h"

namespace moe {

Status ServeExperts(Transport& transport, ExpertWorker& worker, double rank_timeout_seconds) {
  const int R = transport.size();
  ByteRuns nothing, recv, reply;
  nothing.counts.assign(R, 0);
  for (;;) {
    // One dispatch (idle: no deadline, a sleeping wait), its header checked.
    MOE_RETURN_IF_ERROR(transport.Exchange(nothing, &recv, {"dispatch wait"}, -1));
    wire::DispatchHeader header;
    if (recv.counts[0] < static_cast<int64_t>(sizeof(header)))
      return Internal("the coordinator sent a dispatch without a header");
    std::memcpy(&header, recv.at(0), sizeof(header));
    if (header.magic != wire::kDispatchMagic) return Internal("bad dispatch magic");
    if (header.command == wire::kStop) return Status::Ok();
    reply.data.clear();
    reply.counts.assign(R, 0);
    MOE_RETURN_IF_ERROR(worker.Process(header, recv.at(0) + sizeof(header),
                                       recv.counts[0] - sizeof(header), &reply.data));
    reply.counts[0] = static_cast<int64_t>(reply.data.size());
    // Ping-pong: rank 0 takes the answer after the other micro-batch's attention, so that wait
    // has no deadline (rank 0's own deadlines find a dead worker).
    MOE_RETURN_IF_ERROR(
        transport.Exchange(reply, &recv, {"combine", header.layer, header.step},
                           header.micro_batches == 2 ? -1 : rank_timeout_seconds));
  }
}

}  // namespace moe
