// Injected routing for scaling experiments: replaces the router's choice with a chosen load
// pattern, so expert load imbalance can be studied on synthetic weights. Off by default; the
// numbers of a run with injected routing are not the model's.
#pragma once

#include <cstdint>
#include <random>
#include <string>

#include "common/status.h"
#include "coordinator/router.h"

namespace moe {

class RouteSkew {
 public:
  // "real" (no change), "uniform", or "zipf:S" (expert e drawn with probability ~ 1/(e+1)^S).
  static StatusOr<RouteSkew> Parse(const std::string& spec, int experts, uint64_t seed = 7);
  bool active() const { return kind_ != Kind::kReal; }
  // Redraws each token's K distinct experts (sorted by id) with weights 1/K.
  void Apply(Routes* routes);

 private:
  enum class Kind { kReal, kUniform, kZipf };
  Kind kind_ = Kind::kReal;
  std::vector<double> cumulative_;  // [E]
  std::mt19937_64 rng_;
};

}  // namespace moe
