// common/cuda/gpu_attention.h on the emulated device (emulated_ops.cc says what that is): the
// device's attention kernels run on the host, launched as gpu_attention.cu launches them, on
// the device's stream.
#include "tests/simt/simt_host.h"
// (the stand-ins first)
#include "common/cuda/gpu_attention_kernels.cuh"
#include "common/cuda/gpu_check.h"
#include "tests/emulated_gpu/device_queue.h"

namespace moe::gpu {

Status KvWrite(const PagedKv& kv, int layer, const StepRows& rows, const float* k,
               const float* v, const int32_t* tile_row0, const int32_t* tile_rows, int tiles) {
  if (tiles == 0) return Status::Ok();
  emulated::Enqueue(-1, [=] {
    simt::Launch(dim3(tiles), dim3(128), kernels::KvWriteKernel, kv, layer, rows, k, v,
                 tile_row0, tile_rows);
  });
  return Launched("KvWrite");
}

Status PagedAttention(const PagedKv& kv, int layer, const StepRows& rows, const float* q,
                      int heads, int window, const int32_t* tile_row0, const int32_t* tile_rows,
                      int tiles, bool multi_row, const DecodeSplit& split, float* out) {
  auto launch = [](dim3 grid, dim3 block, auto kernel, auto... args) {
    emulated::Enqueue(-1, [=] { simt::Launch(grid, block, kernel, args...); });
  };
  MOE_RETURN_IF_ERROR(kernels::EnqueuePagedAttention(launch, kv, layer, rows, q, heads, window,
                                                     tile_row0, tile_rows, tiles, multi_row,
                                                     split, out));
  return Launched("PagedAttention");
}

}  // namespace moe::gpu
