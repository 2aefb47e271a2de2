// The expert backend that sends rows to the ranks holding their experts and combines the
// answers: plan -> dispatch (an exchange) -> workers compute -> combine (an exchange back).
// With one rank the transport is in-process and rank 0 answers its own dispatch: the same code
// path, the same numbers.
// Index legend: T = tokens, K = experts per token, D = hidden.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <vector>

#include "common/placement.h"
#include "common/sum_plan.h"
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
  int64_t step = 0;
  int tokens = 0;
  const Routes* routes = nullptr;
  std::vector<std::vector<Segment>> segments;  // [T][pieces], in the token's expert order
  std::vector<int64_t> expected_vectors;       // [ranks]
  std::vector<int64_t> rows_sent;              // [ranks]
  std::vector<std::vector<int32_t>> rank_tokens;  // [ranks][rows]: each row's token (linked)
  bool link = false;  // the rows and answers travel over the GPU link (common/wire_format.h)
  ByteRuns received;  // rank 0's own share (one process)
};

class ExpertParallel {
 public:
  // `local` answers rank 0's own share (the one-process case); null when workers hold it all.
  ExpertParallel(const ModelConfig& config, const Placement* placement, Transport* transport,
                 ExpertWorker* local, double rank_timeout_seconds, RunStats* stats);

  // Starts the next step (one forward pass); its exchanges carry its number.
  void BeginStep() { ++step_; }
  // The coordinator now computes layer's attention: what this rank reports (common/activity.h)
  // if the launcher ends it there, say after a worker died.
  void Attending(int layer) const;
  // Sends each row of h [T, D] to the ranks holding its routed experts (micro-batch `micro` of
  // `micros` in this step). `routes` must outlive the handle. h null: the messages describe
  // the rows only, and the caller sends each rank r the rows of handle.rank_tokens[r] over the
  // GPU link.
  StatusOr<DispatchHandle> Dispatch(int layer, int micro, int micros, const float* h, int T,
                                    const Routes& routes);
  // Waits for the answers and writes y [T, D]: per token, its experts' weighted outputs added
  // in expert-id order.
  Status Combine(const DispatchHandle& handle, float* y);
  // For a linked dispatch: waits for every rank's result header and gives the combine as a
  // plan over the answer vectors as they arrive over the link, rank after rank ([sum of
  // expected_vectors, D]); the caller applies it once they are there.
  Status CombineLinked(const DispatchHandle& handle, SumPlan* plan);

  // The most tokens one step may hold: every rank's message must stay under MPI's 2 GiB count
  // (a sliced expert returns one vector per ffn block, so this bounds big models' steps).
  int64_t MaxTokensPerStep() const;

  // Tells every worker to stop (once); after a failed exchange it does nothing.
  Status Stop();
  bool broken() const { return broken_; }
  // Marks the exchange broken (a rank, or the GPU link, was lost) and returns `s`.
  Status Fail(Status s);
  // Whether other ranks compute experts (this rank then waits for them in Combine).
  bool remote() const { return transport_->size() > 1; }

 private:
  // The combine's exchange: rank 0's own share answered here, every reply checked (into
  // recv_); slowest: the longest expert time a rank reported.
  Status ReceiveAnswers(const DispatchHandle& handle, double* slowest);
  void CountCombine(std::chrono::steady_clock::time_point t0, double slowest);
  // The combine as a sum plan, output t = token t's answer, with rank r's answer vectors
  // starting at element first[r] of the plan's base.
  void PlanCombine(const DispatchHandle& handle, const std::vector<int64_t>& first,
                   SumPlan* plan) const;

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
  SumPlan plan_;
};

}  // namespace moe
