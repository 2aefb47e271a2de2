#include "coordinator/route_skew.h"

#include <algorithm>
#include <cmath>

namespace moe {

StatusOr<RouteSkew> RouteSkew::Parse(const std::string& spec, int experts, uint64_t seed) {
  RouteSkew s;
  s.rng_.seed(seed);
  std::vector<double> weight(experts, 1.0);
  if (spec.empty() || spec == "real") return s;
  if (spec == "uniform") {
    s.kind_ = Kind::kUniform;
  } else if (spec.rfind("zipf:", 0) == 0) {
    double exponent = 0;
    try {
      exponent = std::stod(spec.substr(5));
    } catch (const std::exception&) {
      exponent = -1;
    }
    if (!(exponent >= 0 && exponent <= 10))
      return InvalidArgument("--router-skew zipf:S needs S in [0, 10], got '" + spec + "'");
    s.kind_ = Kind::kZipf;
    for (int e = 0; e < experts; ++e) weight[e] = 1.0 / std::pow(e + 1.0, exponent);
  } else {
    return InvalidArgument("--router-skew must be real, uniform or zipf:S, got '" + spec + "'");
  }
  double total = 0;
  for (double w : weight) s.cumulative_.push_back(total += w);
  for (double& c : s.cumulative_) c /= total;
  return s;
}

void RouteSkew::Apply(Routes* routes) {
  if (!active()) return;
  const int K = routes->k, T = routes->tokens(), E = static_cast<int>(cumulative_.size());
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (int t = 0; t < T; ++t) {
    int* ids = &routes->expert[int64_t{t} * K];
    for (int j = 0; j < K; ++j) {
      int e;
      do {  // K distinct experts
        e = static_cast<int>(std::lower_bound(cumulative_.begin(), cumulative_.end(), u(rng_)) -
                             cumulative_.begin());
        e = std::min(e, E - 1);
      } while (std::find(ids, ids + j, e) != ids + j);
      ids[j] = e;
    }
    std::sort(ids, ids + K);
    for (int j = 0; j < K; ++j) routes->weight[int64_t{t} * K + j] = 1.0f / K;
  }
}

}  // namespace moe
