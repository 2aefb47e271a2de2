// common/cuda/gpu_ops.h and side_lanes.h on an emulated device: "device memory" is host memory
// (new memory filled with 0xff bytes, NaN as floats, as a forgotten Memset would leave it on
// a device: unpredictable); kernels, asynchronous copies and memsets wait on the device's
// streams until the host waits for them (device_queue.h); the kernels are the device's own
// (gpu_ops_kernels.cuh, sum_plan_kernel.cuh) run by tests/simt/simt_host.h with the launches
// gpu_ops.cu makes (an empty grid is an error, as on a device), and the cuBLAS GEMMs are loops
// with f32 sums. With the rest of the GPU path compiled as it is,
// this makes libmoe_gpu_emulated.so, which a test loads in place of libmoe_gpu.so
// (MOE_GPU_LIBRARY) so that the GPU path's host logic runs where no GPU is.
#include "tests/simt/simt_host.h"
// (the stand-ins first)
#include "common/cuda/gpu_ops_kernels.cuh"
#include "common/cuda/sum_plan_kernel.cuh"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "common/cuda/gpu_check.h"
#include "common/cuda/gpu_ops.h"
#include "common/cuda/side_lanes.h"
#include "common/dtype.h"
#include "tests/emulated_gpu/device_queue.h"

namespace moe::gpu {
namespace {

using kernels::kThreads;

// As gpu_ops.cu sizes its grid-stride launches.
int Blocks(int64_t n) {
  return static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads, 4096));
}

// A side lane's index, or -1: the device's stream.
int LaneOf(const Lane& lane) { return emulated::QueueOf(lane.stream); }

// kernel<<<grid, block, 0, lane>>>(args...) queued, and checked as gpu_ops.cu checks its
// launches; CUDA refuses a grid or block with no threads when it is launched.
template <typename Kernel, typename... Args>
Status RunOn(const Lane& lane, const char* what, dim3 grid, dim3 block, Kernel kernel,
             Args... args) {
  if (grid.x * grid.y * grid.z == 0 || block.x * block.y * block.z == 0)
    return Internal(std::string("CUDA ") + what + ": invalid configuration argument");
  emulated::Enqueue(LaneOf(lane), [=] { simt::Launch(grid, block, kernel, args...); });
  return Launched(what);
}
template <typename Kernel, typename... Args>
Status Run(const char* what, dim3 grid, dim3 block, Kernel kernel, Args... args) {
  return RunOn(Lane{}, what, grid, block, kernel, args...);
}

__nv_bfloat16* AsBf16(uint16_t* p) { return reinterpret_cast<__nv_bfloat16*>(p); }
const __nv_bfloat16* AsBf16(const uint16_t* p) {
  return reinterpret_cast<const __nv_bfloat16*>(p);
}

}  // namespace

// MOE_EMULATED_GPUS of them (default 1): ranks on one host each take their own from 2 up,
// which NCCL needs (emulated_nccl.cc). They all share this process's memory and queues.
int DeviceCount() {
  const char* n = std::getenv("MOE_EMULATED_GPUS");
  return n && std::atoi(n) > 0 ? std::atoi(n) : 1;
}
Status SetDevice(int) { return Status::Ok(); }
int CurrentDevice() { return 0; }
std::string DeviceName(int) { return "emulated GPU (its kernels run on the host)"; }
std::string DeviceBusId(int device) { return "emulated:" + std::to_string(device); }
std::string NoDeviceReason() { return ""; }

StatusOr<void*> Alloc(size_t bytes) {
  const size_t rounded = (std::max<size_t>(bytes, 1) + 255) / 256 * 256;
  void* p = std::aligned_alloc(256, rounded);
  if (p == nullptr) return ResourceExhausted("the emulated device is out of memory");
  std::memset(p, 0xff, rounded);
  return p;
}
// Freeing waits for the whole device, as cudaFree does.
void Free(void* p) {
  emulated::Drain();
  std::free(p);
}
// Synchronous copies wait for the device's stream first (not for side lanes never joined).
Status CopyToDevice(void* dst, const void* src, size_t bytes) {
  emulated::DrainDevice();
  if (bytes > 0) std::memcpy(dst, src, bytes);
  return Status::Ok();
}
Status CopyToHost(void* dst, const void* src, size_t bytes) {
  return CopyToDevice(dst, src, bytes);
}
Status Synchronize() {
  emulated::Drain();
  return Status::Ok();
}
// From pinned memory the copy reads it when it runs; from other memory, now (CUDA stages it).
Status CopyToDeviceAsync(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return Status::Ok();
  if (emulated::IsPinned(src)) {
    emulated::Enqueue(-1, [=] { std::memcpy(dst, src, bytes); });
  } else {
    auto staged = std::make_shared<std::vector<uint8_t>>(
        static_cast<const uint8_t*>(src), static_cast<const uint8_t*>(src) + bytes);
    emulated::Enqueue(-1, [=] { std::memcpy(dst, staged->data(), bytes); });
  }
  return Status::Ok();
}
// Into pinned memory the copy writes it when it runs; into other memory it is synchronous.
Status CopyToHostAsync(void* dst, const void* src, size_t bytes) {
  if (!emulated::IsPinned(dst)) return CopyToHost(dst, src, bytes);
  if (bytes > 0) emulated::Enqueue(-1, [=] { std::memcpy(dst, src, bytes); });
  return Status::Ok();
}
StatusOr<void*> AllocHost(size_t bytes) {
  MOE_ASSIGN_OR_RETURN(void* p, Alloc(bytes));
  emulated::AddPinned(p, std::max<size_t>(bytes, 1));
  return p;
}
void FreeHost(void* p) {
  emulated::Drain();
  emulated::RemovePinned(p);
  std::free(p);
}
Status Memset(void* p, int value, size_t bytes) {
  emulated::Enqueue(-1, [=] { std::memset(p, value, bytes); });
  return Status::Ok();
}

Status RmsNorm(const float* x, const uint16_t* w, float eps, int T, int D, float* y) {
  if (T == 0) return Status::Ok();
  return Run("RmsNorm", dim3(T), dim3(kThreads), kernels::RmsNormKernel, x, w, eps, D, y);
}
Status Rope(float* x, const int32_t* positions, const float* inv_freq, int T, int heads, int hd) {
  if (T == 0) return Status::Ok();
  return Run("Rope", dim3(T), dim3(kThreads), kernels::RopeKernel, x, positions, inv_freq, heads,
             hd);
}
Status SiluMulToBf16(const float* gate_up, int64_t n, int F, uint16_t* act, const Lane& lane) {
  if (n == 0) return Status::Ok();
  return RunOn(lane, "SiluMulToBf16", dim3(Blocks(n * F)), dim3(kThreads),
               kernels::SiluMulToBf16Kernel, gate_up, n, F, AsBf16(act));
}
Status Embed(const int32_t* ids, const uint16_t* table, int T, int D, float* x) {
  if (T == 0) return Status::Ok();
  return Run("Embed", dim3(T), dim3(kThreads), kernels::EmbedKernel, ids, table, D, x);
}
Status AddInPlace(float* x, const float* y, int64_t n) {
  if (n == 0) return Status::Ok();
  return Run("AddInPlace", dim3(Blocks(n)), dim3(kThreads), kernels::AddKernel, x, y, n);
}
Status GatherRows(const float* x, const int32_t* rows, int R, int D, float* out) {
  if (R == 0) return Status::Ok();
  return Run("GatherRows", dim3(R), dim3(kThreads), kernels::GatherRowsKernel<float, float>, x,
             rows, D, out);
}
Status GatherRowsBf16(const float* x, const int32_t* rows, int n, int D, uint16_t* out) {
  if (n == 0) return Status::Ok();
  return Run("GatherRowsBf16", dim3(n), dim3(kThreads),
             kernels::GatherRowsKernel<float, __nv_bfloat16>, x, rows, D, AsBf16(out));
}
Status GatherRowsBf16(const uint16_t* x, const int32_t* rows, int n, int D, uint16_t* out) {
  if (n == 0) return Status::Ok();
  return Run("GatherRowsBf16", dim3(n), dim3(kThreads),
             kernels::GatherRowsKernel<__nv_bfloat16, __nv_bfloat16>, AsBf16(x), rows, D,
             AsBf16(out));
}
Status ApplySumPlan(const DeviceSumPlan& plan, const float* base, int D, bool accumulate,
                    float* out) {
  if (plan.outputs == 0) return Status::Ok();
  return Run("ApplySumPlan", dim3(plan.outputs), dim3(kThreads), kernels::ApplySumPlanKernel,
             plan.term_begin, plan.source_begin, plan.source, plan.weight, base, D, accumulate,
             out);
}
Status RouterLogits(const float* h, const uint16_t* w, int T, int E, int D, float* logits) {
  if (T == 0) return Status::Ok();
  const int64_t threads = int64_t{T} * E * 32;
  return Run("RouterLogits", dim3(static_cast<unsigned>((threads + kThreads - 1) / kThreads)),
             dim3(kThreads), kernels::RouterLogitsKernel, h, w, T, E, D, logits);
}
Status RouteTopK(const float* logits, int T, int E, int K, int32_t* ids, float* weights) {
  if (E > 64 || K > E) return InvalidArgument("the GPU router supports at most 64 experts");
  if (T == 0) return Status::Ok();
  return Run("RouteTopK", dim3((T + 127) / 128), dim3(128), kernels::RouteKernel, logits, T, E,
             K, ids, weights);
}
Status Argmax(const float* logits, int R, int V, int32_t* ids) {
  if (R == 0) return Status::Ok();
  return Run("Argmax", dim3(R), dim3(kThreads), kernels::ArgmaxKernel, logits, V, ids);
}
Status ToBf16(const float* x, int64_t n, uint16_t* y) {
  if (n == 0) return Status::Ok();
  return Run("ToBf16", dim3(Blocks(n)), dim3(kThreads), kernels::ToBf16Kernel, x, n, AsBf16(y));
}

// y [T, N] (+)= x [T, K] . W [N, K]^T, each product of bf16 values summed in f32 in k order,
// queued on the lane.
Status GemmBf16(const uint16_t* x, int T, int ldx, const uint16_t* w, int N, int K, int ldw,
                bool accumulate, float* y, const Lane& lane) {
  emulated::Enqueue(LaneOf(lane), [=] {
    for (int t = 0; t < T; ++t)
      for (int n = 0; n < N; ++n) {
        float s = 0;
        for (int k = 0; k < K; ++k)
          s += Bf16ToF32(x[int64_t{t} * ldx + k]) * Bf16ToF32(w[int64_t{n} * ldw + k]);
        float& out = y[int64_t{t} * N + n];
        out = accumulate ? out + s : s;
      }
  });
  return Status::Ok();
}
Status GemmBf16Blocks(const uint16_t* x, int T, int ldx, const uint16_t* w, int N, int Kb,
                      int ldw, int blocks, float* y, const Lane& lane) {
  for (int b = 0; b < blocks; ++b)
    MOE_RETURN_IF_ERROR(GemmBf16(x + int64_t{b} * Kb, T, ldx, w + int64_t{b} * Kb, N, Kb, ldw,
                                 false, y + int64_t{b} * T * N, lane));
  return Status::Ok();
}

// Lanes of their own (queues 0, 1, ... in place of streams), whose work waits for the
// device's stream from Fork and joins it at Join (device_queue.h).
StatusOr<std::unique_ptr<SideLanes>> SideLanes::Create(int lanes) {
  auto s = std::unique_ptr<SideLanes>(new SideLanes());
  s->lanes_.resize(lanes);
  for (int i = 0; i < lanes; ++i)
    s->lanes_[i].stream = emulated::StreamOf(i);
  return s;
}
SideLanes::~SideLanes() = default;
Status SideLanes::Fork(int n) {
  emulated::Fork(n);
  return Status::Ok();
}
Status SideLanes::Join(int n) {
  emulated::Join(n);
  return Status::Ok();
}

}  // namespace moe::gpu
