// common/cuda/gpu_sampling.h: one segmented radix sort of the rows (stable, so equal logits keep
// ascending ids), then one thread block per row for the softmax, the cuts and the draw.
#include <cub/cub.cuh>
#include <cuda_runtime.h>

#include "common/cuda/gpu_check.h"
#include "common/cuda/gpu_ops.h"
#include "common/cuda/gpu_sampling.h"

namespace moe::gpu {
namespace {

constexpr int kPickThreads = 1024;

struct MinOp {
  __device__ int operator()(int a, int b) const { return a < b ? a : b; }
};

__global__ void IotaRowsKernel(int32_t* ids, int V, int64_t n, int32_t* offsets, int R) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    ids[i] = static_cast<int32_t>(i % V);
    if (i % V == 0) offsets[i / V] = static_cast<int32_t>(i);
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) offsets[R] = static_cast<int32_t>(n);
}

// One block per row with temperature > 0 (greedy rows were answered by Argmax). Each thread
// owns a contiguous run of the candidates; `cumulative` gets the running sum of their weights.
__global__ void __launch_bounds__(kPickThreads)
    PickKernel(const float* sorted, const int32_t* sorted_ids, double* cumulative,
               const SampleSpec* specs, int V, int32_t* chosen) {
  using Scan = cub::BlockScan<double, kPickThreads>;
  using Reduce = cub::BlockReduce<int, kPickThreads>;
  __shared__ union {
    typename Scan::TempStorage scan;
    typename Reduce::TempStorage reduce;
  } tmp;
  __shared__ int keep_shared;
  const SampleSpec s = specs[blockIdx.x];
  if (s.temperature == 0.0f) return;  // the same for the whole block
  const float* row = sorted + static_cast<int64_t>(blockIdx.x) * V;
  double* c = cumulative + static_cast<int64_t>(blockIdx.x) * V;
  const int k = s.top_k > 0 ? min(s.top_k, V) : V;
  const int per = (k + kPickThreads - 1) / kPickThreads;
  const int begin = min(k, static_cast<int>(threadIdx.x) * per), end = min(k, begin + per);
  const double max_logit = row[0];

  double local = 0;
  for (int i = begin; i < end; ++i) {
    local += exp((row[i] - max_logit) / s.temperature);
    c[i] = local;
  }
  double before = 0;
  Scan(tmp.scan).ExclusiveSum(local, before);
  for (int i = begin; i < end; ++i) c[i] += before;
  __syncthreads();  // every c[i] written; tmp free again
  const double sum = c[k - 1];

  // Top-p: the smallest prefix whose probability reaches top_p.
  int first = k - 1;
  if (s.top_p < 1.0f)
    for (int i = begin; i < end; ++i)
      if (c[i] / sum >= s.top_p) {
        first = i;
        break;
      }
  const int keep_last = Reduce(tmp.reduce).Reduce(first, MinOp());
  if (threadIdx.x == 0) keep_shared = keep_last + 1;
  __syncthreads();
  const int keep = keep_shared;

  // The draw, walked along the kept prefix.
  const double u = static_cast<double>(s.bits >> 11) * 0x1.0p-53 * c[keep - 1];
  int hit = keep - 1;
  for (int i = begin; i < min(end, keep); ++i)
    if (u < c[i]) {
      hit = i;
      break;
    }
  const int at = Reduce(tmp.reduce).Reduce(hit, MinOp());
  if (threadIdx.x == 0) chosen[blockIdx.x] = sorted_ids[static_cast<int64_t>(blockIdx.x) * V + at];
}

}  // namespace

DeviceSampler::~DeviceSampler() { Release(); }

void DeviceSampler::Release() {
  auto free = [](auto*& p) {
    if (p) cudaFree(p);
    p = nullptr;
  };
  free(sort_temp_);
  free(sorted_logits_);
  free(ids_in_);
  free(sorted_ids_);
  free(cumulative_);
  free(offsets_);
  free(specs_);
  free(chosen_);
  rows_ = vocab_ = 0;
  sort_bytes_ = 0;
}

Status DeviceSampler::Reserve(int R, int V) {
  if (R <= rows_ && V == vocab_) return Status::Ok();
  Release();
  if (int64_t{R} * V > INT32_MAX) return InvalidArgument("too many logit rows to sample at once");
  const int64_t n = int64_t{R} * V;
  MOE_RETURN_IF_ERROR(Check(cudaMalloc(&sorted_logits_, n * sizeof(float)), "cudaMalloc"));
  MOE_RETURN_IF_ERROR(Check(cudaMalloc(&ids_in_, n * sizeof(int32_t)), "cudaMalloc"));
  MOE_RETURN_IF_ERROR(Check(cudaMalloc(&sorted_ids_, n * sizeof(int32_t)), "cudaMalloc"));
  MOE_RETURN_IF_ERROR(Check(cudaMalloc(&cumulative_, n * sizeof(double)), "cudaMalloc"));
  MOE_RETURN_IF_ERROR(Check(cudaMalloc(&offsets_, (R + 1) * sizeof(int32_t)), "cudaMalloc"));
  MOE_RETURN_IF_ERROR(Check(cudaMalloc(&specs_, R * sizeof(SampleSpec)), "cudaMalloc"));
  MOE_RETURN_IF_ERROR(Check(cudaMalloc(&chosen_, R * sizeof(int32_t)), "cudaMalloc"));
  IotaRowsKernel<<<static_cast<int>(std::min<int64_t>((n + 255) / 256, 4096)), 256>>>(
      ids_in_, V, n, offsets_, R);
  MOE_RETURN_IF_ERROR(Launched("IotaRows"));
  MOE_RETURN_IF_ERROR(Check(
      cub::DeviceSegmentedRadixSort::SortPairsDescending(
          nullptr, sort_bytes_, sorted_logits_, sorted_logits_, ids_in_, sorted_ids_,
          static_cast<int>(n), R, offsets_, offsets_ + 1),
      "sort size"));
  MOE_RETURN_IF_ERROR(Check(cudaMalloc(&sort_temp_, sort_bytes_), "cudaMalloc"));
  rows_ = R;
  vocab_ = V;
  return Status::Ok();
}

Status DeviceSampler::Sample(const float* logits, int R, int V,
                             const std::vector<SampleSpec>& specs, std::vector<int>* ids) {
  if (static_cast<int>(specs.size()) != R)
    return InvalidArgument("one sampling spec per row: " + std::to_string(specs.size()) +
                           " for " + std::to_string(R) + " rows");
  ids->assign(R, 0);
  if (R == 0) return Status::Ok();
  MOE_RETURN_IF_ERROR(Reserve(R, V));
  MOE_RETURN_IF_ERROR(Argmax(logits, R, V, chosen_));
  bool sampled = false;
  for (const SampleSpec& s : specs) sampled |= s.temperature > 0.0f;
  if (sampled) {
    MOE_RETURN_IF_ERROR(Check(cudaMemcpy(specs_, specs.data(), R * sizeof(SampleSpec),
                                         cudaMemcpyHostToDevice),
                              "copy to device"));
    size_t bytes = sort_bytes_;
    MOE_RETURN_IF_ERROR(Check(cub::DeviceSegmentedRadixSort::SortPairsDescending(
                                  sort_temp_, bytes, logits, sorted_logits_, ids_in_,
                                  sorted_ids_, R * V, R, offsets_, offsets_ + 1),
                              "sort"));
    PickKernel<<<R, kPickThreads>>>(sorted_logits_, sorted_ids_, cumulative_, specs_, V,
                                    chosen_);
    MOE_RETURN_IF_ERROR(Launched("Pick"));
  }
  std::vector<int32_t> out(R);
  MOE_RETURN_IF_ERROR(
      Check(cudaMemcpy(out.data(), chosen_, R * sizeof(int32_t), cudaMemcpyDeviceToHost),
            "copy to host"));
  ids->assign(out.begin(), out.end());
  return Status::Ok();
}

}  // namespace moe::gpu
