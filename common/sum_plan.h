// A sum of weighted vectors in a fixed order, planned on the host and carried out on the host
// (ApplySumPlan here) or on a GPU (gpu::ApplySumPlan), both adding in the same order:
//   out[o] = ((0 + w[k0] * s[k0]) + w[k1] * s[k1]) + ...   over output o's terms, in order
//   s[k]   = (v[first] + v[second]) + ...                   over term k's sources, in order
// with every product and sum rounded on its own (no fused multiply-add). A source is a vector of
// D floats at an element offset from a base pointer.
//
// Both halves of the expert combine are such sums (common/wire_format.h): a worker weights and
// adds its experts' outputs per row (one source per term; a whole expert's ffn blocks as the
// sources of one term on the CPU), and the coordinator adds each token's answers (a sliced
// expert's blocks from all its owners as the sources of one weighted term).
// Index legend: D = vector width.
#pragma once

#include <cstdint>
#include <vector>

namespace moe {

struct SumPlan {
  std::vector<int32_t> term_begin{0};    // [outputs + 1]
  std::vector<int32_t> source_begin{0};  // [terms + 1]
  std::vector<int64_t> source;           // [sources] element offsets of the source vectors
  std::vector<float> weight;             // [terms]

  int outputs() const { return static_cast<int>(term_begin.size()) - 1; }
  void Clear();
  // Built in order: an output, then each of its terms followed by that term's sources.
  void AddOutput() { term_begin.push_back(term_begin.back()); }
  void AddTerm(float w);
  void AddSource(int64_t offset);
};

// out [outputs, D] = the plan's sums of the vectors at `base`.
void ApplySumPlan(const SumPlan& plan, const float* base, int D, float* out);

}  // namespace moe
