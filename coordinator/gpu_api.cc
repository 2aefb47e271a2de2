#include "coordinator/gpu_api.h"

#include "common/cuda/gpu_ops.h"
#include "coordinator/gpu_forward.h"
#include "worker/gpu_experts.h"

namespace moe {
namespace {

StatusOr<DeviceParts> Load(const ModelConfig& config, Checkpoint& ckpt, bool coordinator,
                           const ExpertStore* layout) {
  DeviceParts parts;
  if (coordinator) {
    MOE_ASSIGN_OR_RETURN(std::unique_ptr<GpuForward> f, GpuForward::Load(config, ckpt));
    parts.bytes += f->dense_weight_bytes();
    parts.forward = std::move(f);
  }
  if (layout) {
    MOE_ASSIGN_OR_RETURN(std::unique_ptr<GpuExperts> e, GpuExperts::Load(config, ckpt, *layout));
    parts.bytes += e->bytes();
    parts.experts = std::move(e);
  }
  return parts;
}

const GpuApi kApi = {gpu::DeviceCount, gpu::NoDeviceReason, gpu::SetDevice, gpu::DeviceName,
                     Load};

}  // namespace
}  // namespace moe

extern "C" const moe::GpuApi* moe_gpu_api() { return &moe::kApi; }
