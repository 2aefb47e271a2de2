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
  if (kv.head_dim > kMaxHeadDim || kv.head_dim % 2 != 0)
    return InvalidArgument("the GPU attention kernel takes an even head_dim of at most " +
                           std::to_string(kMaxHeadDim) + ", the model has " +
                           std::to_string(kv.head_dim));
  if (heads % kv.kv_heads != 0) return InvalidArgument("heads must be a multiple of kv heads");
  if (tiles == 0) return Status::Ok();
  if (!multi_row && split.splits > 1) {
    if (split.workspace == nullptr || split.arrivals == nullptr)
      return InvalidArgument("split decode attention needs its workspace and arrival counts");
    if (int64_t{tiles} * heads >= kSplitBlocks)
      return InvalidArgument("split decode attention over " +
                             std::to_string(int64_t{tiles} * heads) +
                             " (row, head) pairs: it counts arrivals for fewer than " +
                             std::to_string(kSplitBlocks) + " (SplitDecode)");
  }
  auto launch = [](dim3 grid, dim3 block, auto kernel, auto... args) {
    kernel<<<grid, block>>>(args...);
  };
  kernels::EnqueuePagedAttention(launch, kv, layer, rows, q, heads, window, tile_row0, tile_rows,
                                 tiles, multi_row, split, out);
  return Launched("PagedAttention");
}

}  // namespace moe::gpu
