// Weights on the device: bf16, row-major, copied from the checkpoint's file mapping (no
// resident host copy) through a small staging buffer. f32 and f16 tensors are rounded to bf16
// (the GPU path computes in bf16; the CPU path keeps the stored dtype).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/checkpoint.h"
#include "common/cuda/gpu_ops.h"
#include "common/status.h"
#include "common/sum_plan.h"

namespace moe::gpu {

// Device allocations freed together.
class DeviceArena {
 public:
  DeviceArena() = default;
  DeviceArena(const DeviceArena&) = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;
  ~DeviceArena();
  StatusOr<void*> Alloc(size_t bytes);
  template <typename T>
  StatusOr<T*> Array(int64_t n) {
    MOE_ASSIGN_OR_RETURN(void* p, Alloc(static_cast<size_t>(n) * sizeof(T)));
    return static_cast<T*>(p);
  }
  int64_t bytes() const { return bytes_; }

 private:
  std::vector<void*> blocks_;
  int64_t bytes_ = 0;
};

// Memory that grows when asked for more (its contents do not survive growing): on the device,
// or pinned on the host for copies that overlap with the device's work.
enum class Memory { kDevice, kPinnedHost };

template <Memory kWhere>
class GrowingBuffer {
 public:
  GrowingBuffer() = default;
  GrowingBuffer(const GrowingBuffer&) = delete;
  GrowingBuffer& operator=(const GrowingBuffer&) = delete;
  ~GrowingBuffer();
  // At least n elements of T.
  template <typename T>
  StatusOr<T*> Get(int64_t n) {
    MOE_RETURN_IF_ERROR(Reserve(static_cast<size_t>(n) * sizeof(T)));
    return static_cast<T*>(p_);
  }

 private:
  Status Reserve(size_t bytes);
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

using DeviceBuffer = GrowingBuffer<Memory::kDevice>;
using HostBuffer = GrowingBuffer<Memory::kPinnedHost>;

// Rows [r0, r1) and columns [c0, c1) (-1: to the end) of the named tensor of exactly `shape`
// (1-D: one row), as bf16 [r1 - r0, c1 - c0] on the device.
StatusOr<uint16_t*> UploadBf16(Checkpoint& ckpt, const std::string& name,
                               const std::vector<int64_t>& shape, DeviceArena& arena,
                               int64_t r0 = 0, int64_t r1 = -1, int64_t c0 = 0, int64_t c1 = -1);
// The same into `dst`, device memory for [r1 - r0, c1 - c0] bf16 values.
Status UploadBf16Into(Checkpoint& ckpt, const std::string& name, const std::vector<int64_t>& shape,
                      uint16_t* dst, int64_t r0 = 0, int64_t r1 = -1, int64_t c0 = 0,
                      int64_t c1 = -1);

// The plan's arrays in `room`, queued on the device's stream (the host copy is staged by the
// call, so the plan may change at once).
StatusOr<DeviceSumPlan> UploadSumPlan(const SumPlan& plan, DeviceBuffer& room);

}  // namespace moe::gpu
