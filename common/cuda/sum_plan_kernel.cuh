// The kernel of gpu::ApplySumPlan (common/cuda/gpu_ops.h). Host-neutral CUDA, like
// gpu_attention_kernels.cuh: tests/simt runs it on the host against moe::ApplySumPlan.
#pragma once

#include <cstdint>

namespace moe::gpu::kernels {

// One block per output; sums in the plan's order (host: moe::ApplySumPlan). accumulate: the
// output's sum is added to what `out` holds, as one more rounded addition.
__global__ void ApplySumPlanKernel(const int32_t* term_begin, const int32_t* source_begin,
                                   const int64_t* source, const float* weight, const float* base,
                                   int D, bool accumulate, float* out) {
  const int o = blockIdx.x;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float y = 0;
    for (int k = term_begin[o]; k < term_begin[o + 1]; ++k) {
      float s = base[source[source_begin[k]] + d];
      for (int i = source_begin[k] + 1; i < source_begin[k + 1]; ++i)
        s = __fadd_rn(s, base[source[i] + d]);
      y = __fadd_rn(y, __fmul_rn(weight[k], s));
    }
    float* at = out + static_cast<int64_t>(o) * D + d;
    *at = accumulate ? __fadd_rn(*at, y) : y;
  }
}

}  // namespace moe::gpu::kernels
