// Kernels of common/cuda/gpu_attention.h.
#include <cuda_runtime.h>

#include <cmath>

#include "common/cuda/gpu_attention.h"
#include "common/cuda/gpu_attention_kernels.cuh"
#include "common/cuda/gpu_check.h"

namespace moe::gpu {

Status KvWrite(const PagedKv& kv, int layer, const StepRows& rows, const float* k,
               const float* v, const int32_t* tile_row0, const int32_t* tile_rows, int tiles) {
  if (tiles == 0) return Status::Ok();
  kernels::KvWriteKernel<<<tiles, 128>>>(kv, layer, rows, k, v, tile_row0, tile_rows);
  return Launched("KvWrite");
}

Status PagedAttention(const PagedKv& kv, int layer, const StepRows& rows, const float* q,
                      int heads, int window, const int32_t* tile_row0, const int32_t* tile_rows,
                      int tiles, bool multi_row, const DecodeSplit& split, float* out) {
  auto launch = [](dim3 grid, dim3 block, auto kernel, auto... args) {
    kernel<<<grid, block>>>(args...);
  };
  MOE_RETURN_IF_ERROR(kernels::EnqueuePagedAttention(launch, kv, layer, rows, q, heads, window,
                                                     tile_row0, tile_rows, tiles, multi_row,
                                                     split, out));
  return Launched("PagedAttention");
}

}  // namespace moe::gpu
