#include "common/sum_plan.h"

#include <algorithm>

namespace moe {

void SumPlan::Clear() {
  term_begin.assign(1, 0);
  source_begin.assign(1, 0);
  source.clear();
  weight.clear();
}

void SumPlan::AddTerm(float w) {
  weight.push_back(w);
  source_begin.push_back(source_begin.back());
  ++term_begin.back();
}

void SumPlan::AddSource(int64_t offset) {
  source.push_back(offset);
  ++source_begin.back();
}

void ApplySumPlan(const SumPlan& plan, const float* base, int D, float* out) {
  std::vector<float> sum(D);
  for (int o = 0; o < plan.outputs(); ++o) {
    float* y = out + int64_t{o} * D;
    std::fill(y, y + D, 0.0f);
    for (int k = plan.term_begin[o]; k < plan.term_begin[o + 1]; ++k) {
      const float w = plan.weight[k];
      const int s0 = plan.source_begin[k], s1 = plan.source_begin[k + 1];
      const float* s = base + plan.source[s0];
      if (s1 - s0 > 1) {
        std::copy(s, s + D, sum.begin());
        for (int i = s0 + 1; i < s1; ++i) {
          const float* v = base + plan.source[i];
          for (int d = 0; d < D; ++d) sum[d] += v[d];
        }
        s = sum.data();
      }
      for (int d = 0; d < D; ++d) y[d] += w * s[d];
    }
  }
}

}  // namespace moe
