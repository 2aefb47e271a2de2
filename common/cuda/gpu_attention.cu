// Kernels of common/cuda/gpu_attention.h.
#include <cuda_runtime.h>

#include <cmath>

#include "common/cuda/gpu_attention.h"
#include "common/cuda/gpu_check.h"

namespace moe::gpu {
namespace {

constexpr int kKeyTile = 32;  // keys staged in shared memory at a time: one per lane
constexpr unsigned kFullWarp = 0xffffffffu;

__device__ float WarpSum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullWarp, v, o);
  return v;
}

__device__ float WarpMax(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullWarp, v, o));
  return v;
}

// Element offset of (position p, layer) of a sequence whose block table starts at `table`.
__device__ int64_t KvAt(const PagedKv& kv, const StepRows& rows, int table, int layer, int p) {
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

// Thread block: one (tile, head), kWarps warps, warp w owning tile rows w, w + kWarps, ...
// Each lane holds head dims lane, lane + 32, ... of its rows' running output.
template <int kWarps, int kRowsPerWarp>
__global__ void __launch_bounds__(kWarps * 32)
    PagedAttentionKernel(PagedKv kv, int layer, StepRows rows, const float* q, int H,
                         int window, const int32_t* tile_row0, const int32_t* tile_rows,
                         float* out) {
  constexpr int kDims = kMaxHeadDim / 32;
  __shared__ float ks[kKeyTile][kMaxHeadDim + 1];  // +1: lanes reading key `lane` miss no bank
  __shared__ float vs[kKeyTile][kMaxHeadDim];
  __shared__ float qs[kWarps * kRowsPerWarp][kMaxHeadDim];
  const int hd = kv.head_dim, kvh = blockIdx.y / (H / kv.kv_heads), h = blockIdx.y;
  const int r0 = tile_row0[blockIdx.x], n = tile_rows[blockIdx.x];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const float scale = rsqrtf(static_cast<float>(hd));

  for (int i = threadIdx.x; i < n * hd; i += blockDim.x)
    qs[i / hd][i % hd] = q[(static_cast<int64_t>(r0 + i / hd) * H + h) * hd + i % hd];
  const int table = rows.table_at[r0];
  const int p_last = rows.pos[r0 + n - 1];
  const int lo = window > 0 ? max(0, rows.pos[r0] - window + 1) : 0;

  float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][kDims];
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    m[i] = -INFINITY;
    l[i] = 0;
#pragma unroll
    for (int c = 0; c < kDims; ++c) acc[i][c] = 0;
  }

  for (int base = lo; base <= p_last; base += kKeyTile) {
    const int count = min(kKeyTile, p_last - base + 1);
    __syncthreads();  // the previous tile is used up (and qs is written, the first time)
    for (int i = threadIdx.x; i < count * hd; i += blockDim.x) {
      const int j = i / hd, d = i % hd;
      const int64_t at = KvAt(kv, rows, table, layer, base + j) + kvh * hd + d;
      ks[j][d] = kv.k[at];
      vs[j][d] = kv.v[at];
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

}  // namespace

Status KvWrite(const PagedKv& kv, int layer, const StepRows& rows, const float* k,
               const float* v, const int32_t* tile_row0, const int32_t* tile_rows, int tiles) {
  if (tiles == 0) return Status::Ok();
  KvWriteKernel<<<tiles, 128>>>(kv, layer, rows, k, v, tile_row0, tile_rows);
  return Launched("KvWrite");
}

Status PagedAttention(const PagedKv& kv, int layer, const StepRows& rows, const float* q,
                      int heads, int window, const int32_t* tile_row0, const int32_t* tile_rows,
                      int tiles, bool multi_row, float* out) {
  if (kv.head_dim > kMaxHeadDim || kv.head_dim % 2 != 0)
    return InvalidArgument("the GPU attention kernel takes an even head_dim of at most " +
                           std::to_string(kMaxHeadDim) + ", the model has " +
                           std::to_string(kv.head_dim));
  if (heads % kv.kv_heads != 0) return InvalidArgument("heads must be a multiple of kv heads");
  if (tiles == 0) return Status::Ok();
  const dim3 grid(tiles, heads);
  if (multi_row) {
    static_assert(4 * 4 >= kTileRows);
    PagedAttentionKernel<4, 4><<<grid, 128>>>(kv, layer, rows, q, heads, window, tile_row0,
                                              tile_rows, out);
  } else {
    PagedAttentionKernel<1, 1><<<grid, 32>>>(kv, layer, rows, q, heads, window, tile_row0,
                                             tile_rows, out);
  }
  return Launched("PagedAttention");
}

}  // namespace moe::gpu
