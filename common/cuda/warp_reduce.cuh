// A warp's sum and maximum by butterfly shuffles: every lane gets the result. Host-neutral CUDA
// (tests/simt runs it on the host).
#pragma once

namespace moe::gpu::kernels {

constexpr unsigned kFullWarp = 0xffffffffu;

__device__ inline float WarpSum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullWarp, v, o);
  return v;
}

__device__ inline float WarpMax(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullWarp, v, o));
  return v;
}

}  // namespace moe::gpu::kernels
