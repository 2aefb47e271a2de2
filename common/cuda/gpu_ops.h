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

namespace moe::gpu {

// The number of usable CUDA devices; 0 (not an error) when there is no driver or GPU.
int DeviceCount();
// "cuda: no usable GPU (error 35: CUDA driver version is insufficient ...)" style detail.
std::string NoDeviceReason();

// Device memory owned by the caller of Alloc.
StatusOr<void*> Alloc(size_t bytes);
void Free(void* p);
Status CopyToDevice(void* dst, const void* src, size_t bytes);
Status CopyToHost(void* dst, const void* src, size_t bytes);
Status Synchronize();

// y [T, D] = x / sqrt(mean(x^2) + eps) * w, w bf16 [D].
Status RmsNorm(const float* x, const uint16_t* w, float eps, int T, int D, float* y);
// Rotates x [T, heads, hd] in place at positions [T] (host-computed inv_freq [hd/2] on device).
Status Rope(float* x, const int32_t* positions, const float* inv_freq, int T, int heads, int hd);
// gate[i] = silu(gate[i]) * up[i].
Status SiluMul(float* gate, const float* up, int64_t n);
// x [T, D] = table[ids[t]] widened from bf16.
Status Embed(const int32_t* ids, const uint16_t* table, int T, int D, float* x);
// Router: logits [T, E] -> softmax, top-k, renormalised; ids [T, K] sorted by id, weights [T, K].
Status RouteTopK(const float* logits, int T, int E, int K, int32_t* ids, float* weights);
// ids [R] = first maximum of each row of logits [R, V].
Status Argmax(const float* logits, int R, int V, int32_t* ids);

// Causal attention of one sequence's queries q [C, H, hd] at positions p0.. against keys and
// values k, v [P, KV, hd] for positions 0..P-1 (P = p0 + C), window W (0 = none); out [C, H, hd].
Status Attention(const float* q, const float* k, const float* v, int C, int p0, int H, int KV,
                 int hd, int window, float* out);

// y [T, N] = x [T, K] . W [N, K]^T with W bf16 and x f32, through cuBLAS in bf16 with f32
// accumulation (x is rounded to bf16 first). `scratch` holds at least T * K bf16 values.
Status MatMulBf16(const float* x, int T, const uint16_t* w, int N, int K, uint16_t* scratch,
                  float* y);

}  // namespace moe::gpu
