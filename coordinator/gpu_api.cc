#include "coordinator/gpu_api.h"

#include "common/cuda/gpu_ops.h"
#include "common/cuda/mpi_link.h"
#include "common/cuda/nccl_link.h"
#include "coordinator/gpu_forward.h"
#include "worker/gpu_experts.h"

namespace moe {
namespace {

static_assert(GpuExperts::kMaxLanes == kMaxExpertStreams);

StatusOr<DeviceParts> Load(const ModelConfig& config, Checkpoint& ckpt, bool coordinator,
                           const ExpertStore* layout, int expert_streams) {
  DeviceParts parts;
  std::unique_ptr<GpuForward> forward;
  std::unique_ptr<GpuExperts> experts;
  if (coordinator) {
    MOE_ASSIGN_OR_RETURN(forward, GpuForward::Load(config, ckpt));
    parts.bytes += forward->dense_weight_bytes();
  }
  if (layout) {
    MOE_ASSIGN_OR_RETURN(experts, GpuExperts::Load(config, ckpt, *layout, expert_streams));
    parts.bytes += experts->bytes();
  }
  // The Runtime keeps both for the model's life.
  if (forward && experts && experts->holds_every_expert()) forward->UseLocalExperts(experts.get());
  parts.forward = std::move(forward);
  parts.experts = std::move(experts);
  return parts;
}

StatusOr<std::unique_ptr<GpuLink>> OpenLink(bool nccl, const std::string& id,
                                            Transport& transport, double timeout_seconds,
                                            DeviceParts* parts) {
  std::unique_ptr<gpu::DeviceLink> link;
  if (nccl) {
    MOE_ASSIGN_OR_RETURN(link, gpu::NcclLink::Open(id, transport, timeout_seconds));
  } else {
    link = std::make_unique<gpu::MpiLink>(&transport, timeout_seconds);
  }
  // The parts are the types Load made.
  if (parts->forward) static_cast<GpuForward*>(parts->forward.get())->UseLink(link.get());
  if (parts->experts) static_cast<GpuExperts*>(parts->experts.get())->UseLink(link.get());
  return std::unique_ptr<GpuLink>(std::move(link));
}

const GpuApi kApi = {gpu::DeviceCount,          gpu::NoDeviceReason, gpu::SetDevice,
                     gpu::DeviceName,           Load,                gpu::DeviceBusId,
                     gpu::NcclLink::Unavailable, gpu::NcclLink::NewId, OpenLink};

}  // namespace
}  // namespace moe

extern "C" const moe::GpuApi* moe_gpu_api() { return &moe::kApi; }
