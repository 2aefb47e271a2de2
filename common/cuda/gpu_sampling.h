// Picking the next tokens on the device, with coordinator/sampler.h's rules: greedy (the first
// maximum) at temperature 0; else candidates by descending logit (ties: lower id first), cut to
// top_k, softmax of logit / temperature over them in f64, cut to the smallest prefix reaching
// top_p, and a draw from the request's generator (its 64 bits, drawn on the host) walked along
// that prefix. Index legend: R = rows, V = vocab.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"

namespace moe::gpu {

struct SampleSpec {
  float temperature = 0.0f;  // 0 = greedy
  int top_k = 0;             // 0 = no limit
  float top_p = 1.0f;
  uint64_t bits = 0;         // the generator's next output (unused when greedy)
};

// Keeps its device buffers between calls.
class DeviceSampler {
 public:
  DeviceSampler() = default;
  DeviceSampler(const DeviceSampler&) = delete;
  DeviceSampler& operator=(const DeviceSampler&) = delete;
  ~DeviceSampler();

  // logits [R, V] on the device; one spec and one chosen id per row (host).
  Status Sample(const float* logits, int R, int V, const std::vector<SampleSpec>& specs,
                std::vector<int>* ids);

 private:
  Status Reserve(int R, int V);
  void Release();

  int rows_ = 0, vocab_ = 0;
  size_t sort_bytes_ = 0;
  void* sort_temp_ = nullptr;
  float* sorted_logits_ = nullptr;  // [R, V]
  int32_t* ids_in_ = nullptr;       // [R, V] 0 .. V-1 per row
  int32_t* sorted_ids_ = nullptr;   // [R, V]
  double* cumulative_ = nullptr;    // [R, V]
  int32_t* offsets_ = nullptr;      // [R + 1] row starts
  SampleSpec* specs_ = nullptr;     // [R]
  int32_t* chosen_ = nullptr;       // [R]
};

}  // namespace moe::gpu
