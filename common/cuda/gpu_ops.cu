// CUDA kernels of common/cuda/gpu_ops.h. Reductions use warp shuffles and one block per row;
// every kernel is checked against the CPU operation in tests/gpu_ops_test.cc.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <dlfcn.h>

#include <cfloat>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "common/cuda/gpu_check.h"
#include "common/cuda/gpu_ops.h"
#include "common/cuda/gpu_ops_kernels.cuh"
#include "common/cuda/sum_plan_kernel.cuh"

namespace moe::gpu {
namespace {

using namespace kernels;  // NOLINT: the kernels of this file, in gpu_ops_kernels.cuh

int Blocks(int64_t n) { return static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads, 4096)); }

cublasHandle_t Cublas() {
  static std::once_flag once;
  static cublasHandle_t handle = nullptr;
  std::call_once(once, [] {
    if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) handle = nullptr;
  });
  return handle;
}

}  // namespace

int DeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear it: no driver or no GPU is not an error here
    return 0;
  }
  return n;
}

std::string DeviceBusId(int device) {
  char id[32] = {};
  if (cudaDeviceGetPCIBusId(id, sizeof(id), device) != cudaSuccess) {
    cudaGetLastError();  // clear it: without a bus id, the exchange goes through host memory
    return "";
  }
  return id;
}

std::string NoDeviceReason() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  cudaGetLastError();
  // The runtime reports a missing driver as one too old for it: tell the two apart.
  if (e == cudaErrorInsufficientDriver) {
    void* driver = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (driver == nullptr) return "no GPU driver (libcuda.so.1 is not installed)";
    dlclose(driver);
    return "the NVIDIA driver is older than this build's CUDA " +
           std::to_string(CUDART_VERSION / 1000) + " runtime needs (CUDA error 35)";
  }
  const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
  const std::string hidden =
      visible != nullptr ? std::string(" (CUDA_VISIBLE_DEVICES='") + visible + "')" : "";
  if (e == cudaErrorNoDevice || (e == cudaSuccess && n == 0)) return "no GPU visible" + hidden;
  if (e != cudaSuccess)
    return "no usable GPU (CUDA error " + std::to_string(static_cast<int>(e)) + ": " +
           cudaGetErrorString(e) + ")";
  return "";
}

StatusOr<void*> Alloc(size_t bytes) {
  void* p = nullptr;
  MOE_RETURN_IF_ERROR(Check(cudaMalloc(&p, bytes), "cudaMalloc"));
  return p;
}
void Free(void* p) { cudaFree(p); }
Status CopyToDevice(void* dst, const void* src, size_t bytes) {
  return Check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "copy to device");
}
Status CopyToHost(void* dst, const void* src, size_t bytes) {
  return Check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "copy to host");
}
Status CopyToDeviceAsync(void* dst, const void* src, size_t bytes) {
  return Check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice), "copy to device");
}
Status CopyToHostAsync(void* dst, const void* src, size_t bytes) {
  return Check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost), "copy to host");
}
StatusOr<void*> AllocHost(size_t bytes) {
  void* p = nullptr;
  MOE_RETURN_IF_ERROR(Check(cudaMallocHost(&p, bytes), "pinned host allocation"));
  return p;
}
void FreeHost(void* p) { cudaFreeHost(p); }
Status Synchronize() { return Check(cudaDeviceSynchronize(), "synchronize"); }
Status Memset(void* p, int value, size_t bytes) {
  return Check(cudaMemset(p, value, bytes), "memset");
}

Status SetDevice(int device) { return Check(cudaSetDevice(device), "set device"); }
int CurrentDevice() {
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) cudaGetLastError();
  return device;
}

std::string DeviceName(int device) {
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, device) != cudaSuccess) {
    cudaGetLastError();
    return "device " + std::to_string(device);
  }
  char mem[32];
  snprintf(mem, sizeof mem, "%.1f GiB", prop.totalGlobalMem / 1073741824.0);
  return std::string(prop.name) + ", " + mem;
}

Status RmsNorm(const float* x, const uint16_t* w, float eps, int T, int D, float* y) {
  if (T == 0) return Status::Ok();  // a grid of no blocks is a launch error
  RmsNormKernel<<<T, kThreads>>>(x, w, eps, D, y);
  return Launched("RmsNorm");
}

Status Rope(float* x, const int32_t* positions, const float* inv_freq, int T, int heads, int hd) {
  if (T == 0) return Status::Ok();
  RopeKernel<<<T, kThreads>>>(x, positions, inv_freq, heads, hd);
  return Launched("Rope");
}

Status Embed(const int32_t* ids, const uint16_t* table, int T, int D, float* x) {
  if (T == 0) return Status::Ok();
  EmbedKernel<<<T, kThreads>>>(ids, table, D, x);
  return Launched("Embed");
}

Status RouteTopK(const float* logits, int T, int E, int K, int32_t* ids, float* weights) {
  if (E > 64 || K > E) return InvalidArgument("the GPU router supports at most 64 experts");
  if (T == 0) return Status::Ok();
  RouteKernel<<<(T + 127) / 128, 128>>>(logits, T, E, K, ids, weights);
  return Launched("RouteTopK");
}

Status Argmax(const float* logits, int R, int V, int32_t* ids) {
  if (R == 0) return Status::Ok();
  ArgmaxKernel<<<R, kThreads>>>(logits, V, ids);
  return Launched("Argmax");
}

Status AddInPlace(float* x, const float* y, int64_t n) {
  if (n == 0) return Status::Ok();
  AddKernel<<<Blocks(n), kThreads>>>(x, y, n);
  return Launched("AddInPlace");
}

Status SiluMulToBf16(const float* gate_up, int64_t n, int F, uint16_t* act, const Lane& lane) {
  if (n == 0) return Status::Ok();
  SiluMulToBf16Kernel<<<Blocks(n * F), kThreads, 0, lane.stream>>>(
      gate_up, n, F, reinterpret_cast<__nv_bfloat16*>(act));
  return Launched("SiluMulToBf16");
}

Status GatherRowsBf16(const float* x, const int32_t* rows, int n, int D, uint16_t* out) {
  if (n == 0) return Status::Ok();
  GatherRowsKernel<<<n, kThreads>>>(x, rows, D, reinterpret_cast<__nv_bfloat16*>(out));
  return Launched("GatherRowsBf16");
}

Status GatherRowsBf16(const uint16_t* x, const int32_t* rows, int n, int D, uint16_t* out) {
  if (n == 0) return Status::Ok();
  GatherRowsKernel<<<n, kThreads>>>(reinterpret_cast<const __nv_bfloat16*>(x), rows, D,
                                    reinterpret_cast<__nv_bfloat16*>(out));
  return Launched("GatherRowsBf16");
}

Status ApplySumPlan(const DeviceSumPlan& plan, const float* base, int D, bool accumulate,
                    float* out) {
  if (plan.outputs == 0) return Status::Ok();
  kernels::ApplySumPlanKernel<<<plan.outputs, kThreads>>>(
      plan.term_begin, plan.source_begin, plan.source, plan.weight, base, D, accumulate, out);
  return Launched("ApplySumPlan");
}

Status GatherRows(const float* x, const int32_t* rows, int R, int D, float* out) {
  if (R == 0) return Status::Ok();
  GatherRowsKernel<<<R, kThreads>>>(x, rows, D, out);
  return Launched("GatherRows");
}

Status RouterLogits(const float* h, const uint16_t* w, int T, int E, int D, float* logits) {
  if (T == 0) return Status::Ok();
  const int64_t threads = int64_t{T} * E * 32;
  RouterLogitsKernel<<<static_cast<int>((threads + kThreads - 1) / kThreads), kThreads>>>(
      h, w, T, E, D, logits);
  return Launched("RouterLogits");
}

Status ToBf16(const float* x, int64_t n, uint16_t* y) {
  if (n == 0) return Status::Ok();
  ToBf16Kernel<<<Blocks(n), kThreads>>>(x, n, reinterpret_cast<__nv_bfloat16*>(y));
  return Launched("ToBf16");
}

// Row-major y [T, N] = x [T, K] . W [N, K]^T is, column-major, y^T [N, T] = W^T' x^T with
// W read transposed: the row-major arrays are their own column-major transposes.
Status GemmBf16(const uint16_t* x, int T, int ldx, const uint16_t* w, int N, int K, int ldw,
                bool accumulate, float* y, const Lane& lane) {
  if (T == 0 || N == 0) return Status::Ok();
  cublasHandle_t handle = lane.blas ? lane.blas : Cublas();
  if (handle == nullptr) return Internal("cublasCreate failed (no usable GPU?)");
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  return CheckBlas(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, N, T, K, &alpha, w,
                                CUDA_R_16BF, ldw, x, CUDA_R_16BF, ldx, &beta, y, CUDA_R_32F, N,
                                CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                   "GemmEx");
}

Status GemmBf16Blocks(const uint16_t* x, int T, int ldx, const uint16_t* w, int N, int Kb,
                      int ldw, int blocks, float* y, const Lane& lane) {
  if (T == 0 || N == 0 || blocks == 0) return Status::Ok();
  cublasHandle_t handle = lane.blas ? lane.blas : Cublas();
  if (handle == nullptr) return Internal("cublasCreate failed (no usable GPU?)");
  const float alpha = 1.0f, beta = 0.0f;
  return CheckBlas(cublasGemmStridedBatchedEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, N, T, Kb, &alpha,
                                              w, CUDA_R_16BF, ldw, Kb, x, CUDA_R_16BF, ldx, Kb,
                                              &beta, y, CUDA_R_32F, N, int64_t{T} * N, blocks,
                                              CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                   "GemmStridedBatchedEx");
}

}  // namespace moe::gpu
