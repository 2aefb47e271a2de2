// A worker's answer to one dispatch message (common/wire_format.h): runs each held expert slice
// once over all of its rows, and writes the combine message.
// Index legend: n = rows for one expert, D = hidden.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "common/sum_plan.h"
#include "common/thread_pool.h"
#include "common/wire_format.h"
#include "worker/expert_store.h"

namespace moe {

// One dispatch's expert work for a device. Each task is one held slice and its rows; the
// tasks' outputs lie end to end on the device, [n, D] for a whole expert (its blocks summed)
// and [blocks, n, D] for a slice (one partial per ffn block), and `plan` adds them into the
// answer vectors (its sources are element offsets into those outputs).
struct DeviceTask {
  int slice = 0;  // index into the store's list for the layer
  int n = 0;      // rows
};
struct DeviceJob {
  int layer = 0;
  int64_t step = 0;
  std::vector<DeviceTask> tasks;
  const SumPlan* plan = nullptr;
  int vectors = 0;
  // Host-staged: the tasks' rows end to end, x [sum n, D] on the host, and the answers,
  // out [vectors, D] on the host.
  const float* x = nullptr;
  float* out = nullptr;
  // Over the GPU link (x and out null): `rows` rows arrive from rank 0, and row_index
  // [sum n] (host) gives each task row's place among them; the answers go back the same way.
  int rows = 0;
  const int32_t* row_index = nullptr;
  // Ping-pong: rank 0 takes the answers only after the other micro-batch's attention, so
  // sending them over the link has no deadline.
  bool ping_pong = false;
};

// Where the expert FFNs run when not on this rank's CPU (worker/gpu_experts.h).
class ExpertDevice {
 public:
  virtual ~ExpertDevice() = default;
  virtual Status Run(const DeviceJob& job) = 0;
  // Whether rows and answers travel over a GPU link (common/gpu_link.h).
  virtual bool linked() const = 0;
};

class ExpertWorker {
 public:
  // `device`: null to compute on the CPU from the store's weights; else the store holds the
  // slices' layout only and the device computes.
  ExpertWorker(const ExpertStore* store, int experts_per_token, int hidden, ThreadPool* pool,
               ExpertDevice* device = nullptr)
      : store_(store), K_(experts_per_token), D_(hidden), pool_(pool), device_(device) {}

  // `header` is the message's (its magic already checked by the caller); `body` holds the rows
  // (without their hidden when they travel over the GPU link). Appends the ResultHeader and the
  // answer vectors (not when linked) to `reply`.
  Status Process(const wire::DispatchHeader& header, const uint8_t* body, int64_t body_bytes,
                 std::vector<uint8_t>* reply);

 private:
  const ExpertStore* store_;
  int K_, D_;
  ThreadPool* pool_;
  ExpertDevice* device_;
  ExpertScratch scratch_;
  // Per held slice: the message rows routed to it; per (row, expert of the row): its slice and
  // its place among the slice's rows.
  std::vector<std::vector<int>> rows_;
  std::vector<std::pair<int, int>> slot_;
  SumPlan plan_;
  std::vector<int32_t> row_index_;
  std::vector<float> x_, partials_;
};

}  // namespace moe
