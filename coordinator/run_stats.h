// Where the time goes and where the tokens go: per-phase seconds summed over layers and steps,
// tokens per expert per layer, rows per rank. Printed by --stats, included in --json.
#pragma once

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace moe {

using Clock = std::chrono::steady_clock;

// Adds the seconds since `t` to `*sum` (when stats are kept) and restarts `t`.
inline void Lap(Clock::time_point& t, double* sum) {
  const auto now = Clock::now();
  if (sum) *sum += std::chrono::duration<double>(now - t).count();
  t = now;
}

struct PhaseSeconds {
  double attention = 0;  // norms, q/k/v/o projections, RoPE, attention
  double routing = 0;    // router matmul, softmax, top-k
  double dispatch = 0;   // planning, packing, the dispatch exchange
  double expert = 0;     // expert compute (the slowest worker's, per layer)
  double combine = 0;    // waiting for results beyond expert compute, and the weighted sum
  double lm_head = 0;    // final norm and lm_head
  double moe_wait = 0;   // wall time rank 0 spends in dispatch and combine calls
  double forward = 0;    // wall time of whole forward passes
};

struct RunStats {
  PhaseSeconds seconds;
  int64_t layer_passes = 0;                         // layers x steps
  int64_t experts_touched = 0;                      // sum over layer passes of experts with rows
  std::vector<std::vector<int64_t>> expert_tokens;  // [L][E] tokens routed to each expert
  std::vector<int64_t> rank_rows;                   // [ranks] rows dispatched to each rank
  std::vector<int64_t> rank_bytes;                  // [ranks] bytes dispatched + returned
  // Conservation, per layer and rank: rows sent, rows the rank says it received, vectors
  // expected back, vectors received. Combine fails the step if any pair disagrees.
  std::vector<std::vector<int64_t>> rows_sent, rows_received;        // [L][ranks]
  std::vector<std::vector<int64_t>> vectors_expected, vectors_returned;  // [L][ranks]

  void Reset(int layers, int experts, int ranks);
  // One layer pass's routed experts (ids in [0, E), any order): expert_tokens, experts_touched.
  void CountRoutes(int layer, const std::vector<int>& experts);
  nlohmann::json ToJson() const;
  std::string ToText() const;  // a table for --stats
};

}  // namespace moe
