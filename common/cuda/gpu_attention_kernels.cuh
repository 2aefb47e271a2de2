// The kernels of common/cuda/gpu_attention.h and the order they are launched in. Host-neutral
// CUDA: gpu_attention.cu launches them on the device, and tests/simt runs the same code on the
// host (tests/simt/simt_host.h) where no GPU is present.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/cuda/gpu_attention.h"
#include "common/cuda/warp_reduce.cuh"

namespace moe::gpu {
namespace kernels {

// Element offset of (position p, layer) of a sequence whose block table starts at `table`.
__device__ inline int64_t KvAt(const PagedKv& kv, const StepRows& rows, int table, int layer,
                               int p) {
  const int block = rows.tables[table + p / kv.block_size];
  return ((static_cast<int64_t>(block) * kv.layers + layer) * kv.block_size +
          p % kv.block_size) *
         (static_cast<int64_t>(kv.kv_heads) * kv.head_dim);
}

// One thread block per tile.
__global__ void KvWriteKernel(PagedKv kv, int layer, StepRows rows, const float* k,
                              const float* v, const int32_t* tile_row0,
                              const int32_t* tile_rows) {
  const int width = kv.kv_heads * kv.head_dim;
  for (int t = tile_row0[blockIdx.x]; t < tile_row0[blockIdx.x] + tile_rows[blockIdx.x]; ++t) {
    const int64_t at = KvAt(kv, rows, rows.table_at[t], layer, rows.pos[t]);
    for (int i = threadIdx.x; i < width; i += blockDim.x) {
      kv.k[at + i] = k[static_cast<int64_t>(t) * width + i];
      kv.v[at + i] = v[static_cast<int64_t>(t) * width + i];
    }
  }
}

// row [hd] = the softmax partials p [splits, hd + 2] (each: max, sum, unnormalised output)
// merged in split order, by the calling warp. The partials were written by other thread
// blocks: read from L2 (__ldcg), past this SM's L1.
__device__ inline void MergeSplits(const float* p, int splits, int hd, float* row) {
  float m = -INFINITY, l = 0;
  for (int z = 0; z < splits; ++z) m = fmaxf(m, __ldcg(p + z * (hd + 2)));
  for (int z = 0; z < splits; ++z)
    l += __ldcg(p + z * (hd + 2) + 1) * expf(__ldcg(p + z * (hd + 2)) - m);
  for (int d = threadIdx.x; d < hd; d += 32) {
    float a = 0;
    for (int z = 0; z < splits; ++z)
      a += __ldcg(p + z * (hd + 2) + 2 + d) * expf(__ldcg(p + z * (hd + 2)) - m);
    row[d] = a / l;
  }
}

// Thread block: one (tile, head), kWarps warps, warp w owning tile rows w, w + kWarps, ...
// Each lane holds head dims lane, lane + 32, ... of its rows' running output. kSplit: a
// decode tile (one row, one warp) whose keys are cut into gridDim.z splits of `split_keys`;
// block z takes split z and writes its partial softmax (max, sum, unnormalised output) to
// `partial` [tiles, H, splits, hd + 2], and the pair's last block to finish (counted in
// `arrivals` [tiles * H], left zero) merges them into `out`. Else the block takes every key
// its rows see and writes `out`.
template <int kWarps, int kRowsPerWarp, bool kSplit>
__global__ void __launch_bounds__(kWarps * 32)
    PagedAttentionKernel(PagedKv kv, int layer, StepRows rows, const float* q, int H,
                         int window, const int32_t* tile_row0, const int32_t* tile_rows,
                         int split_keys, float* partial, int* arrivals, float* out) {
  constexpr int kDims = kMaxHeadDim / 32;
  __shared__ float ks[kKeyTile][kMaxHeadDim + 1];  // +1: lanes reading key `lane` miss no bank
  __shared__ float vs[kKeyTile][kMaxHeadDim];
  __shared__ float qs[kWarps * kRowsPerWarp][kMaxHeadDim];
  __shared__ int64_t at[kKeyTile];  // where each staged key's head starts
  const int hd = kv.head_dim, kvh = blockIdx.y / (H / kv.kv_heads), h = blockIdx.y;
  const int r0 = tile_row0[blockIdx.x], n = tile_rows[blockIdx.x];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const float scale = rsqrtf(static_cast<float>(hd));

  for (int i = threadIdx.x; i < n * hd; i += blockDim.x)
    qs[i / hd][i % hd] = q[(static_cast<int64_t>(r0 + i / hd) * H + h) * hd + i % hd];
  const int table = rows.table_at[r0];
  int lo = window > 0 ? max(0, rows.pos[r0] - window + 1) : 0;
  int last = rows.pos[r0 + n - 1];
  if constexpr (kSplit) {
    lo += static_cast<int>(blockIdx.z) * split_keys;
    last = min(last, lo + split_keys - 1);
  }

  float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][kDims];
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    m[i] = -INFINITY;
    l[i] = 0;
#pragma unroll
    for (int c = 0; c < kDims; ++c) acc[i][c] = 0;
  }

  for (int base = lo; base <= last; base += kKeyTile) {
    const int count = min(kKeyTile, last - base + 1);
    __syncthreads();  // the previous tile is used up (and qs is written, the first time)
    // One block-table lookup per key, then every thread on the tile's elements side by side.
    if (static_cast<int>(threadIdx.x) < count)
      at[threadIdx.x] = KvAt(kv, rows, table, layer, base + threadIdx.x) + kvh * hd;
    __syncthreads();
    for (int i = threadIdx.x; i < count * hd; i += blockDim.x) {
      const int j = i / hd, d = i % hd;
      ks[j][d] = kv.k[at[j] + d];
      vs[j][d] = kv.v[at[j] + d];
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      const int r = warp + i * kWarps;
      if (r >= n) break;  // the same for the whole warp
      const int p = rows.pos[r0 + r];
      const int row_lo = window > 0 ? max(0, p - window + 1) : 0;
      const int key = base + lane;
      float s = -INFINITY;
      if (lane < count && key >= row_lo && key <= p) {
        float dot = 0;
        for (int d = 0; d < hd; ++d) dot += qs[r][d] * ks[lane][d];
        s = dot * scale;
      }
      const float m_new = fmaxf(m[i], WarpMax(s));
      if (m_new == -INFINITY) continue;  // no key of this row in the tile yet (warp-uniform)
      const float keep = expf(m[i] - m_new);  // 0 while m[i] is still -inf
      const float e = s == -INFINITY ? 0.0f : expf(s - m_new);
      l[i] = l[i] * keep + WarpSum(e);
#pragma unroll
      for (int c = 0; c < kDims; ++c) acc[i][c] *= keep;
      for (int j = 0; j < count; ++j) {
        const float pj = __shfl_sync(kFullWarp, e, j);
#pragma unroll
        for (int c = 0; c < kDims; ++c)
          if (lane + 32 * c < hd) acc[i][c] += pj * vs[j][lane + 32 * c];
      }
      m[i] = m_new;
    }
  }
  if constexpr (kSplit) {
    // An empty split (its keys all past the row's) leaves max -inf and sum 0: it adds nothing.
    const int64_t pair = static_cast<int64_t>(blockIdx.x) * H + h;
    float* splits = partial + pair * gridDim.z * (hd + 2);
    float* mine = splits + blockIdx.z * (hd + 2);
    if (lane == 0) {
      mine[0] = m[0];
      mine[1] = l[0];
    }
#pragma unroll
    for (int c = 0; c < kDims; ++c)
      if (lane + 32 * c < hd) mine[2 + lane + 32 * c] = acc[0][c];
    __syncthreads();  // every lane's part of the partial written
    __shared__ int done_before;  // splits of this pair that had finished before this one
    if (threadIdx.x == 0) {
      __threadfence();  // the block's partial visible device-wide before the count says done
      done_before = atomicAdd(&arrivals[pair], 1);
      __threadfence();  // and the other splits' partials read only after their counts
    }
    __syncthreads();
    if (done_before != static_cast<int>(gridDim.z) - 1) return;  // the whole block
    MergeSplits(splits, gridDim.z, hd, out + (static_cast<int64_t>(r0) * H + h) * hd);
    if (threadIdx.x == 0) arrivals[pair] = 0;  // for the next launch
  } else {
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      const int r = warp + i * kWarps;
      if (r >= n) break;
#pragma unroll
      for (int c = 0; c < kDims; ++c)
        if (lane + 32 * c < hd)
          out[(static_cast<int64_t>(r0 + r) * H + h) * hd + lane + 32 * c] = acc[i][c] / l[i];
    }
  }
}

// Queues PagedAttention's kernel through `launch(grid, block, kernel, args...)`, after its
// checks (CheckPagedAttention).
template <typename Launch>
Status EnqueuePagedAttention(Launch&& launch, const PagedKv& kv, int layer, const StepRows& rows,
                             const float* q, int heads, int window, const int32_t* tile_row0,
                             const int32_t* tile_rows, int tiles, bool multi_row,
                             const DecodeSplit& split, float* out) {
  MOE_RETURN_IF_ERROR(CheckPagedAttention(kv, heads, tiles, multi_row, split));
  if (tiles == 0) return Status::Ok();
  float* no_partial = nullptr;
  int* no_arrivals = nullptr;
  if (multi_row) {
    static_assert(4 * 4 >= kTileRows);
    launch(dim3(tiles, heads), dim3(128), PagedAttentionKernel<4, 4, false>, kv, layer, rows, q,
           heads, window, tile_row0, tile_rows, 0, no_partial, no_arrivals, out);
  } else if (split.splits <= 1) {
    launch(dim3(tiles, heads), dim3(32), PagedAttentionKernel<1, 1, false>, kv, layer, rows, q,
           heads, window, tile_row0, tile_rows, 0, no_partial, no_arrivals, out);
  } else {
    launch(dim3(tiles, heads, split.splits), dim3(32), PagedAttentionKernel<1, 1, true>, kv,
           layer, rows, q, heads, window, tile_row0, tile_rows, split.keys, split.workspace,
           split.arrivals, out);
  }
  return Status::Ok();
}

}  // namespace kernels
}  // namespace moe::gpu
