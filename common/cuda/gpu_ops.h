// Device operations for the GPU path (CUDA): the coordinator's small kernels and the bf16
// matmul through cuBLAS. Index legend: T = tokens, D = hidden, E = experts, K = top-k,
// V = vocab, H = heads, hd = head dim.
//
// Host code includes this header without the CUDA toolkit; every pointer argument is device
// memory unless it says otherwise. Built only with MOE_CUDA (see CMakeLists.txt).
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

struct CUstream_st;    // cudaStream_t's
struct cublasContext;  // cublasHandle_t's

namespace moe::gpu {

// Where an operation that takes one is queued: {} is the device's (legacy default) stream with
// the shared cuBLAS handle; side_lanes.h makes others.
struct Lane {
  CUstream_st* stream = nullptr;
  cublasContext* blas = nullptr;  // bound to `stream`
};

// The number of usable CUDA devices; 0 (not an error) when there is no driver or GPU.
int DeviceCount();
// Makes `device` this thread's (and this process's default) device.
Status SetDevice(int device);
// This thread's device.
int CurrentDevice();
// "NVIDIA H100 80GB HBM3, 79.1 GiB".
std::string DeviceName(int device);
// The device's PCI bus id, "0000:3b:00.0" ("" when CUDA cannot say).
std::string DeviceBusId(int device);
// Why no GPU can be used, for a notice or an error: "no GPU driver (libcuda.so.1 is not
// installed)", "no GPU visible (CUDA_VISIBLE_DEVICES='')", ...; "" when one can.
std::string NoDeviceReason();

// Device memory owned by the caller of Alloc.
StatusOr<void*> Alloc(size_t bytes);
void Free(void* p);
Status CopyToDevice(void* dst, const void* src, size_t bytes);
Status CopyToHost(void* dst, const void* src, size_t bytes);
Status Synchronize();
// Copies queued on the device's stream; the host side should be pinned (HostBuffer) to overlap.
Status CopyToDeviceAsync(void* dst, const void* src, size_t bytes);
Status CopyToHostAsync(void* dst, const void* src, size_t bytes);
// Pinned host memory owned by the caller of AllocHost.
StatusOr<void*> AllocHost(size_t bytes);
void FreeHost(void* p);
Status Memset(void* p, int value, size_t bytes);

// y [T, D] = x / sqrt(mean(x^2) + eps) * w, w bf16 [D].
Status RmsNorm(const float* x, const uint16_t* w, float eps, int T, int D, float* y);
// Rotates x [T, heads, hd] in place at positions [T] (host-computed inv_freq [hd/2] on device).
Status Rope(float* x, const int32_t* positions, const float* inv_freq, int T, int heads, int hd);
// act [n, F] = silu(gate_up[:, :F]) * gate_up[:, F:] rounded to bf16 (to nearest even),
// gate_up [n, 2F]: an expert's gate and up projections side by side.
Status SiluMulToBf16(const float* gate_up, int64_t n, int F, uint16_t* act,
                     const Lane& lane = {});
// x [T, D] = table[ids[t]] widened from bf16.
Status Embed(const int32_t* ids, const uint16_t* table, int T, int D, float* x);
// x[i] += y[i].
Status AddInPlace(float* x, const float* y, int64_t n);
// out [R, D] = x[rows[r]] for r < R.
Status GatherRows(const float* x, const int32_t* rows, int R, int D, float* out);
// out [n, D] = x[rows[i]] rounded to bf16 (to nearest even).
Status GatherRowsBf16(const float* x, const int32_t* rows, int n, int D, uint16_t* out);
// The same from bf16 rows, copied as they are.
Status GatherRowsBf16(const uint16_t* x, const int32_t* rows, int n, int D, uint16_t* out);
// A SumPlan (common/sum_plan.h) on the device (UploadSumPlan, common/cuda/device_weights.h).
struct DeviceSumPlan {
  const int32_t* term_begin = nullptr;    // [outputs + 1]
  const int32_t* source_begin = nullptr;  // [terms + 1]
  const int64_t* source = nullptr;        // [sources]
  const float* weight = nullptr;          // [terms]
  int outputs = 0;
};
// out [outputs, D] = the plan carried out over the vectors at `base`, adding in the plan's
// order with every product and sum rounded on its own, as moe::ApplySumPlan does on the host;
// accumulate: out += each output's sum instead (x += a layer's expert answers).
Status ApplySumPlan(const DeviceSumPlan& plan, const float* base, int D, bool accumulate,
                    float* out);
// logits [T, E] = h [T, D] . w [E, D]^T in f32 (w bf16 widened exactly), one f32 dot product
// per output: the router decides which experts run, so it does not round h to bf16.
Status RouterLogits(const float* h, const uint16_t* w, int T, int E, int D, float* logits);
// Router: logits [T, E] -> softmax, top-k, renormalised; ids [T, K] sorted by id, weights [T, K].
Status RouteTopK(const float* logits, int T, int E, int K, int32_t* ids, float* weights);
// ids [R] = first maximum of each row of logits [R, V].
Status Argmax(const float* logits, int R, int V, int32_t* ids);

// y [n] = x [n] rounded to bf16 (to nearest even).
Status ToBf16(const float* x, int64_t n, uint16_t* y);

// y [T, N] (+)= x [T, K] . W [N, K]^T with x and W bf16, through cuBLAS with f32 accumulation;
// rows of x are ldx apart, of W ldw apart, of y N apart. accumulate: y += instead of y =.
Status GemmBf16(const uint16_t* x, int T, int ldx, const uint16_t* w, int N, int K, int ldw,
                bool accumulate, float* y, const Lane& lane = {});
// The same split along K into `blocks` runs of Kb: y [blocks, T, N], y[b] = x[:, b] . W[:, b]^T
// (one strided batched GEMM).
Status GemmBf16Blocks(const uint16_t* x, int T, int ldx, const uint16_t* w, int N, int Kb,
                      int ldw, int blocks, float* y, const Lane& lane = {});

}  // namespace moe::gpu
