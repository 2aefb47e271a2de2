// Where a layer's experts run. The forward pass hands over the normed hidden rows and their
// routes and gets back, per token, the routing-weighted sum of its experts' outputs, added in
// expert-id order. The in-process backend runs them here; the distributed one dispatches rows
// to the ranks that own the experts and combines their answers.
#pragma once

#include "common/status.h"
#include "coordinator/router.h"

namespace moe {

class ExpertBackend {
 public:
  virtual ~ExpertBackend() = default;
  // h [T, D] -> y [T, D] for layer `layer`.
  virtual Status Run(int layer, const float* h, int T, const Routes& routes, float* y) = 0;
};

}  // namespace moe
