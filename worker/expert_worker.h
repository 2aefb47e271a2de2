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

class ExpertWorker {
 public:
  ExpertWorker(const ExpertStore* store, int experts_per_token, int hidden, ThreadPool* pool)
      : store_(store), K_(experts_per_token), D_(hidden), pool_(pool) {}

  // `layer` and `rows` come from the message header (already checked by the caller);
  // `body` holds the rows. Appends the ResultHeader and vectors to `reply`.
  Status Process(int layer, int64_t step, int rows, const uint8_t* body, int64_t body_bytes,
                 std::vector<uint8_t>* reply);

 private:
  const ExpertStore* store_;
  int K_, D_;
  ThreadPool* pool_;
  ExpertScratch scratch_;
  // Per held slice: the message rows routed to it and their routing weights.
  std::vector<std::vector<int>> rows_;
  std::vector<std::vector<float>> weights_;
  std::vector<float> x_, partials_, out_;
};

}  // namespace moe
