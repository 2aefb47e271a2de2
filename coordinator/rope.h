// Rotary position embedding in the Hugging Face "rotate half" layout: for i < hd/2 the pair
// (x[i], x[i + hd/2]) is rotated by angle pos * theta^(-2i/hd). Angles are formed in f32 the
// way transformers forms them (inv_freq in f32, times the position in f32).
#pragma once

#include <vector>

namespace moe {

class Rope {
 public:
  Rope(int head_dim, double theta);

  // x[heads, hd] for one token at `pos`, rotated in place.
  void Apply(float* x, int heads, int pos) const;
  const std::vector<float>& inv_freq() const { return inv_freq_; }

 private:
  int head_dim_;
  std::vector<float> inv_freq_;  // [hd/2]
};

}  // namespace moe
