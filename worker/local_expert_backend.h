// The in-process expert backend: this process holds every expert and runs them itself.
#pragma once

#include "coordinator/expert_backend.h"
#include "worker/expert_store.h"

namespace moe {

class LocalExpertBackend : public ExpertBackend {
 public:
  LocalExpertBackend(const ExpertStore* store, ThreadPool* pool) : store_(store), pool_(pool) {}
  Status Run(int layer, const float* h, int T, const Routes& routes, float* y) override;

 private:
  const ExpertStore* store_;
  ThreadPool* pool_;
  ExpertScratch scratch_;
  std::vector<int> rows_;             // token index of each gathered row
  std::vector<float> weights_;        // routing weight of each gathered row
  std::vector<float> x_, partials_, out_;
};

}  // namespace moe
