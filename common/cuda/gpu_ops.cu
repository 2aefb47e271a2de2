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
#include "common/cuda/sum_plan_kernel.cuh"

namespace moe::gpu {
namespace {

constexpr int kThreads = 256;

__device__ float Bf16(uint16_t v) { return __uint_as_float(static_cast<uint32_t>(v) << 16); }

__device__ float WarpSum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

struct SumOp {
  __device__ static float Warp(float v) { return WarpSum(v); }
  static constexpr float kIdentity = 0.0f;
};

// Reduces over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
template <typename Op>
__device__ float BlockReduce(float v) {
  __shared__ float partial[32];
  v = Op::Warp(v);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = threadIdx.x < blockDim.x / 32 ? partial[lane] : Op::kIdentity;
  if (warp == 0) v = Op::Warp(v);
  if (threadIdx.x == 0) partial[0] = v;
  __syncthreads();
  const float out = partial[0];
  __syncthreads();
  return out;
}

__global__ void RmsNormKernel(const float* x, const uint16_t* w, float eps, int D, float* y) {
  const float* row = x + static_cast<int64_t>(blockIdx.x) * D;
  float ss = 0;
  for (int i = threadIdx.x; i < D; i += blockDim.x) ss += row[i] * row[i];
  const float inv = rsqrtf(BlockReduce<SumOp>(ss) / D + eps);
  for (int i = threadIdx.x; i < D; i += blockDim.x)
    y[static_cast<int64_t>(blockIdx.x) * D + i] = Bf16(w[i]) * (row[i] * inv);
}

__global__ void RopeKernel(float* x, const int32_t* positions, const float* inv_freq, int heads,
                           int hd) {
  const int t = blockIdx.x, half = hd / 2;
  for (int i = threadIdx.x; i < heads * half; i += blockDim.x) {
    const int h = i / half, j = i % half;
    float s, c;
    sincosf(static_cast<float>(positions[t]) * inv_freq[j], &s, &c);
    float* v = x + (static_cast<int64_t>(t) * heads + h) * hd;
    const float a = v[j], b = v[j + half];
    v[j] = a * c - b * s;
    v[j + half] = b * c + a * s;
  }
}

__global__ void SiluMulToBf16Kernel(const float* gate_up, int64_t n, int F,
                                    __nv_bfloat16* act) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n * F;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / F, f = i % F;
    const float g = gate_up[row * 2 * F + f];
    act[i] = __float2bfloat16_rn(g / (1.0f + expf(-g)) * gate_up[row * 2 * F + F + f]);
  }
}

__global__ void EmbedKernel(const int32_t* ids, const uint16_t* table, int D, float* x) {
  const uint16_t* row = table + static_cast<int64_t>(ids[blockIdx.x]) * D;
  for (int i = threadIdx.x; i < D; i += blockDim.x)
    x[static_cast<int64_t>(blockIdx.x) * D + i] = Bf16(row[i]);
}

// One thread per token: E and K are small (8 and 2 for Mixtral; at most 64 here).
__global__ void RouteKernel(const float* logits, int T, int E, int K, int32_t* ids,
                            float* weights) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= T) return;
  const float* l = logits + static_cast<int64_t>(t) * E;
  float p[64];
  float mx = -FLT_MAX, sum = 0;
  for (int e = 0; e < E; ++e) mx = fmaxf(mx, l[e]);
  for (int e = 0; e < E; ++e) sum += (p[e] = expf(l[e] - mx));
  for (int e = 0; e < E; ++e) p[e] /= sum;
  int chosen[64];
  float top = 0;
  for (int j = 0; j < K; ++j) {  // the largest not yet taken; ties to the lower id
    int best = -1;
    for (int e = 0; e < E; ++e) {
      bool taken = false;
      for (int i = 0; i < j; ++i) taken |= chosen[i] == e;
      if (!taken && (best < 0 || p[e] > p[best])) best = e;
    }
    chosen[j] = best;
    top += p[best];
  }
  for (int a = 1; a < K; ++a)  // sort the chosen by id
    for (int b = a; b > 0 && chosen[b - 1] > chosen[b]; --b) {
      const int tmp = chosen[b];
      chosen[b] = chosen[b - 1];
      chosen[b - 1] = tmp;
    }
  for (int j = 0; j < K; ++j) {
    ids[static_cast<int64_t>(t) * K + j] = chosen[j];
    weights[static_cast<int64_t>(t) * K + j] = p[chosen[j]] / top;
  }
}

__global__ void ArgmaxKernel(const float* logits, int V, int32_t* ids) {
  const float* row = logits + static_cast<int64_t>(blockIdx.x) * V;
  float best = -FLT_MAX;
  int at = 0;
  for (int v = threadIdx.x; v < V; v += blockDim.x)
    if (row[v] > best) best = row[v], at = v;
  __shared__ float vals[kThreads];
  __shared__ int idx[kThreads];
  vals[threadIdx.x] = best;
  idx[threadIdx.x] = at;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      const float o = vals[threadIdx.x + s];
      const int oi = idx[threadIdx.x + s];
      if (o > vals[threadIdx.x] || (o == vals[threadIdx.x] && oi < idx[threadIdx.x]))
        vals[threadIdx.x] = o, idx[threadIdx.x] = oi;
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) ids[blockIdx.x] = idx[0];
}

__global__ void AddKernel(float* x, const float* y, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[i] += y[i];
}

__device__ void Store(float* p, float v) { *p = v; }
__device__ void Store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }
__device__ void Store(__nv_bfloat16* p, __nv_bfloat16 v) { *p = v; }

template <typename In, typename Out>
__global__ void GatherRowsKernel(const In* x, const int32_t* rows, int D, Out* out) {
  const In* src = x + static_cast<int64_t>(rows[blockIdx.x]) * D;
  for (int i = threadIdx.x; i < D; i += blockDim.x)
    Store(&out[static_cast<int64_t>(blockIdx.x) * D + i], src[i]);
}

// One warp per (token, expert).
__global__ void RouterLogitsKernel(const float* h, const uint16_t* w, int T, int E, int D,
                                   float* logits) {
  const int item = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
  if (item >= T * E) return;  // whole warps leave together (blockDim is a multiple of 32)
  const int t = item / E, e = item % E;
  const float* x = h + static_cast<int64_t>(t) * D;
  const uint16_t* row = w + static_cast<int64_t>(e) * D;
  float s = 0;
  for (int d = lane; d < D; d += 32) s += x[d] * Bf16(row[d]);
  s = WarpSum(s);
  if (lane == 0) logits[item] = s;
}

__global__ void ToBf16Kernel(const float* x, int64_t n, __nv_bfloat16* y) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = __float2bfloat16_rn(x[i]);
}

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
  if (cudaDeviceGetPCIBusId(id, sizeof(id), device) != cudaSuccess) return "";
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
  RmsNormKernel<<<T, kThreads>>>(x, w, eps, D, y);
  return Launched("RmsNorm");
}

Status Rope(float* x, const int32_t* positions, const float* inv_freq, int T, int heads, int hd) {
  RopeKernel<<<T, kThreads>>>(x, positions, inv_freq, heads, hd);
  return Launched("Rope");
}

Status Embed(const int32_t* ids, const uint16_t* table, int T, int D, float* x) {
  EmbedKernel<<<T, kThreads>>>(ids, table, D, x);
  return Launched("Embed");
}

Status RouteTopK(const float* logits, int T, int E, int K, int32_t* ids, float* weights) {
  if (E > 64 || K > E) return InvalidArgument("the GPU router supports at most 64 experts");
  RouteKernel<<<(T + 127) / 128, 128>>>(logits, T, E, K, ids, weights);
  return Launched("RouteTopK");
}

Status Argmax(const float* logits, int R, int V, int32_t* ids) {
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
