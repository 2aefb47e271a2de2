// common/cuda/nccl_link.h on the emulated device: there is no NCCL there, so --gpu-exchange
// auto moves rows through host memory and nccl is refused, naming this reason.
#include "common/cuda/nccl_link.h"

namespace moe::gpu {

struct NcclLink::State {};

std::string NcclLink::Unavailable() { return "the emulated GPU has no NCCL"; }
StatusOr<std::string> NcclLink::NewId() { return FailedPrecondition(Unavailable()); }
StatusOr<std::unique_ptr<NcclLink>> NcclLink::Open(const std::string&, int, int, double) {
  return FailedPrecondition(Unavailable());
}
NcclLink::NcclLink(std::unique_ptr<State> state) : s_(std::move(state)) {}
NcclLink::~NcclLink() = default;
Status NcclLink::Wait(const ExchangeLabel&, Deadline) { return FailedPrecondition(Unavailable()); }
void NcclLink::Abort() {}
Status NcclLink::Queue(const std::vector<Move>&, bool) { return FailedPrecondition(Unavailable()); }

}  // namespace moe::gpu
