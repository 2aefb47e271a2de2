// A worker's answer to one dispatch message (common/wire_format.h): runs each held expert slice
// once over all of its rows, and writes the combine message.
// Index legend: n = rows for one expert, D = hidden.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "common/thread_pool.h"
#include "worker/expert_store.h"

namespace moe {

// One held slice's rows for a device: x [n, D] (host); out (host): the expert's output
// [n, D] with its blocks summed when the slice is a whole expert, else the slice's block
// partials [blocks, n, D].
struct DeviceTask {
  int slice = 0;  // index into the store's list for the layer
  const float* x = nullptr;
  int n = 0;
  float* out = nullptr;
};

// Where the expert FFNs run when not on this rank's CPU (worker/gpu_experts.h).
class ExpertDevice {
 public:
  virtual ~ExpertDevice() = default;
  virtual Status Run(int layer, const std::vector<DeviceTask>& tasks) = 0;
};

class ExpertWorker {
 public:
  // `device`: null to compute on the CPU from the store's weights; else the store holds the
  // slices' layout only and the device computes.
  ExpertWorker(const ExpertStore* store, int experts_per_token, int hidden, ThreadPool* pool,
               ExpertDevice* device = nullptr)
      : store_(store), K_(experts_per_token), D_(hidden), pool_(pool), device_(device) {}

  // `layer` and `rows` come from the message header (already checked by the caller);
  // `body` holds the rows. Appends the ResultHeader and vectors to `reply`.
  Status Process(int layer, int64_t step, int rows, const uint8_t* body, int64_t body_bytes,
                 std::vector<uint8_t>* reply);

 private:
  const ExpertStore* store_;
  int K_, D_;
  ThreadPool* pool_;
  ExpertDevice* device_;
  ExpertScratch scratch_;
  // Per held slice: the message rows routed to it and their routing weights.
  std::vector<std::vector<int>> rows_;
  std::vector<std::vector<float>> weights_;
  std::vector<float> x_, partials_, out_;
};

}  // namespace moe
