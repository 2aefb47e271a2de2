#include "common/cuda/device_weights.h"

#include <algorithm>
#include <cstring>

#include "common/cuda/gpu_ops.h"
#include "common/dtype.h"

namespace moe::gpu {

DeviceArena::~DeviceArena() {
  for (void* p : blocks_) Free(p);
}

StatusOr<void*> DeviceArena::Alloc(size_t bytes) {
  auto p = gpu::Alloc(std::max<size_t>(bytes, 1));
  if (!p.ok())
    return ResourceExhausted("cannot allocate " + std::to_string(bytes >> 20) +
                             " MiB more on the GPU (" + std::to_string(bytes_ >> 20) +
                             " MiB held): " + p.status().message() +
                             "; use more ranks (each worker holds fewer experts) or --device cpu");
  blocks_.push_back(p.value());
  bytes_ += static_cast<int64_t>(bytes);
  return p.value();
}

namespace {

StatusOr<void*> Allocate(Memory where, size_t bytes) {
  return where == Memory::kDevice ? Alloc(bytes) : AllocHost(bytes);
}

void Release(Memory where, void* p) {
  if (where == Memory::kDevice)
    Free(p);
  else
    FreeHost(p);
}

}  // namespace

template <Memory kWhere>
GrowingBuffer<kWhere>::~GrowingBuffer() {
  if (p_) Release(kWhere, p_);
}

template <Memory kWhere>
Status GrowingBuffer<kWhere>::Reserve(size_t bytes) {
  if (bytes <= bytes_) return Status::Ok();
  if (p_) Release(kWhere, p_);
  p_ = nullptr;
  bytes_ = 0;
  MOE_ASSIGN_OR_RETURN(p_, Allocate(kWhere, bytes + bytes / 4));  // room to grow a little
  bytes_ = bytes + bytes / 4;
  return Status::Ok();
}

template class GrowingBuffer<Memory::kDevice>;
template class GrowingBuffer<Memory::kPinnedHost>;

StatusOr<uint16_t*> UploadBf16(Checkpoint& ckpt, const std::string& name,
                               const std::vector<int64_t>& shape, DeviceArena& arena,
                               int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  const int64_t rows = (r1 < 0 ? (shape.size() == 2 ? shape[0] : 1) : r1) - r0;
  const int64_t cols = (c1 < 0 ? shape.back() : c1) - c0;
  MOE_ASSIGN_OR_RETURN(uint16_t * dst, arena.Array<uint16_t>(rows * cols));
  MOE_RETURN_IF_ERROR(UploadBf16Into(ckpt, name, shape, dst, r0, r1, c0, c1));
  return dst;
}

Status UploadBf16Into(Checkpoint& ckpt, const std::string& name, const std::vector<int64_t>& shape,
                      uint16_t* dst, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  const int64_t rows_all = shape.size() == 2 ? shape[0] : 1, cols_all = shape.back();
  if (r1 < 0) r1 = rows_all;
  if (c1 < 0) c1 = cols_all;
  const int64_t rows = r1 - r0, cols = c1 - c0;
  return ckpt.Read(name, shape, rows * cols * 2, [&](const TensorView& t) {
    // Rows converted into a staging buffer of about 16 MiB, then copied over.
    const int64_t batch = std::max<int64_t>(1, (int64_t{8} << 20) / cols);
    std::vector<uint16_t> stage(std::min(rows, batch) * cols);
    for (int64_t r = 0; r < rows; r += batch) {
      const int64_t n = std::min(batch, rows - r);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t at = (r0 + r + i) * cols_all + c0;
        uint16_t* out = &stage[i * cols];
        if (t.dtype == DType::kBF16) {
          std::memcpy(out, static_cast<const uint16_t*>(t.data) + at, cols * 2);
        } else if (t.dtype == DType::kF16) {
          const uint16_t* in = static_cast<const uint16_t*>(t.data) + at;
          for (int64_t c = 0; c < cols; ++c) out[c] = F32ToBf16(F16ToF32(in[c]));
        } else {
          const float* in = static_cast<const float*>(t.data) + at;
          for (int64_t c = 0; c < cols; ++c) out[c] = F32ToBf16(in[c]);
        }
      }
      MOE_RETURN_IF_ERROR(CopyToDevice(dst + r * cols, stage.data(), n * cols * 2));
    }
    return Status::Ok();
  });
}

StatusOr<DeviceSumPlan> UploadSumPlan(const SumPlan& plan, DeviceBuffer& room) {
  // One upload: source [S] int64 | weight [terms] f32 | term_begin [O + 1] |
  // source_begin [terms + 1] int32.
  const size_t S = plan.source.size(), terms = plan.weight.size(), O = plan.outputs();
  const size_t bytes = S * 8 + terms * 4 + (O + 1) * 4 + (terms + 1) * 4;
  std::vector<uint8_t> up(bytes);
  uint8_t* p = up.data();
  auto put = [&p](const auto& v) {
    std::memcpy(p, v.data(), v.size() * sizeof(v[0]));
    p += v.size() * sizeof(v[0]);
  };
  put(plan.source);
  put(plan.weight);
  put(plan.term_begin);
  put(plan.source_begin);
  MOE_ASSIGN_OR_RETURN(uint8_t * d, room.Get<uint8_t>(static_cast<int64_t>(bytes)));
  MOE_RETURN_IF_ERROR(CopyToDeviceAsync(d, up.data(), bytes));
  DeviceSumPlan out;
  out.source = reinterpret_cast<const int64_t*>(d);
  out.weight = reinterpret_cast<const float*>(d + S * 8);
  out.term_begin = reinterpret_cast<const int32_t*>(d + S * 8 + terms * 4);
  out.source_begin = out.term_begin + O + 1;
  out.outputs = static_cast<int>(O);
  return out;
}

}  // namespace moe::gpu
