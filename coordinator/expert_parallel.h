// The expert backend that sends rows to the ranks holding their experts and combines the
// answers: plan -> dispatch (an exchange) -> workers compute -> combine (an exchange back).
// With one rank the transport is in-process and rank 0 answers its own dispatch: the same code
// path, the same numbers.
// Index legend: T = tokens, K = experts per token, D = hidden.
#pragma once

#include <atomic>
#include <memory>
#include <vector>

#include "common/placement.h"
#include "common/transport.h"
#include "coordinator/router.h"
#include "coordinator/run_stats.h"
#include "worker/expert_worker.h"

namespace moe {

// One output piece of a token: a run of whole experts j0..j0+n-1 answered by one vector, or one
// owner's slice of expert j0 answered by `vectors` partials.
struct Segment {
  int rank = 0;
  int j0 = 0;        // first of the token's experts (index into its K)
  int n = 1;         // experts in the run
  int vectors = 1;   // vectors in the reply
  int64_t first = 0; // index of its first vector in the rank's reply
};

// What dispatch sent where, for combine to put the answers back in token order.
struct DispatchHandle {
  int layer = 0;
  int tokens = 0;
  const Routes* routes = nullptr;
  std::vector<std::vector<Segment>> segments;  // [T][pieces], in the token's expert order
  std::vector<int64_t> expected_vectors;       // [ranks]
  std::vector<int64_t> rows_sent;              // [ranks]
  ByteRuns received;                           // rank 0's own share (one process)
};

class ExpertParallel {
 public:
  // `local` answers rank 0's own share (the one-process case); null when workers hold it all.
  ExpertParallel(const ModelConfig& config, const Placement* placement, Transport* transport,
                 ExpertWorker* local, double rank_timeout_seconds, RunStats* stats);

  // Sends each row of h [T, D] to the ranks holding its routed experts (micro-batch `micro` of
  // `micros` in this step). `routes` must outlive the handle.
  StatusOr<DispatchHandle> Dispatch(int layer, int micro, int micros, const float* h, int T,
                                    const Routes& routes);
  // Waits for the answers and writes y [T, D]: per token, its experts' weighted outputs added
  // in expert-id order.
  Status Combine(const DispatchHandle& handle, float* y);

  // The most tokens one step may hold: every rank's message must stay under MPI's 2 GiB count
  // (a sliced expert returns one vector per ffn block, so this bounds big models' steps).
  int64_t MaxTokensPerStep() const;

  // Tells every worker to stop (once); after a failed exchange it does nothing.
  Status Stop();
  bool broken() const { return broken_; }
  // Whether other ranks compute experts (this rank then waits for them in Combine).
  bool remote() const { return transport_->size() > 1; }

 private:
  Status Fail(Status s);

  const ModelConfig& config_;
  const Placement* placement_;
  Transport* transport_;
  ExpertWorker* local_;
  double timeout_;
  RunStats* stats_;
  int64_t step_ = -1;
  std::atomic<bool> broken_{false};  // read by request threads
  bool stopped_ = false;
  ByteRuns send_, recv_;
  std::vector<int64_t> replica_counter_;
  std::vector<float> slice_sum_;
};

}  // namespace moe
