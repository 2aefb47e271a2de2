// The kernels of common/cuda/gpu_ops.h but the GEMMs and the sum plan's. Host-neutral CUDA,
// like gpu_attention_kernels.cuh: gpu_ops.cu launches them on the device, and tests/simt runs
// them on the host against the CPU's operations.
#pragma once

#include <cfloat>
#include <cstdint>

#ifdef __CUDACC__
#include <cuda_bf16.h>
#endif

#include "common/cuda/warp_reduce.cuh"

namespace moe::gpu::kernels {

constexpr int kThreads = 256;  // threads per block of the kernels below

__device__ inline float Bf16(uint16_t v) {
  return __uint_as_float(static_cast<uint32_t>(v) << 16);
}

struct SumOp {
  __device__ static float Warp(float v) { return WarpSum(v); }
  static constexpr float kIdentity = 0.0f;
};

// Reduces over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
template <typename Op>
__device__ inline float BlockReduce(float v) {
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
    if (static_cast<int>(threadIdx.x) < s) {
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

__device__ inline void Store(float* p, float v) { *p = v; }
__device__ inline void Store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }
__device__ inline void Store(__nv_bfloat16* p, __nv_bfloat16 v) { *p = v; }

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

}  // namespace moe::gpu::kernels
