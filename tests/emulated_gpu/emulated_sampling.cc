// common/cuda/gpu_sampling.h on the emulated device (emulated_ops.cc says what that is): the
// device sampler's kernels are built on CUB, which does not run on the host, so each row is
// picked by coordinator/sampler.h's rules, which the device sampler follows, with the bits the
// request's generator drew.
#include "common/cuda/gpu_sampling.h"

#include "coordinator/sampler.h"
#include "tests/emulated_gpu/device_queue.h"

namespace moe::gpu {

DeviceSampler::~DeviceSampler() = default;

Status DeviceSampler::Sample(const float* logits, int R, int V,
                             const std::vector<SampleSpec>& specs, std::vector<int>* ids) {
  if (static_cast<int>(specs.size()) != R)
    return InvalidArgument("one sampling spec per row: " + std::to_string(specs.size()) +
                           " for " + std::to_string(R) + " rows");
  emulated::DrainDevice();  // the logits, and the ids back before it returns
  ids->resize(R);
  for (int r = 0; r < R; ++r) {
    const SampleSpec& s = specs[r];
    Sampler sampler({s.temperature, s.top_k, s.top_p, 0});
    (*ids)[r] = sampler.Pick(logits + int64_t{r} * V, V, s.bits);
  }
  return Status::Ok();
}

}  // namespace moe::gpu
