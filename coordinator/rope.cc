#include "coordinator/rope.h"

#include <cmath>

namespace moe {

Rope::Rope(int head_dim, double theta) : head_dim_(head_dim), inv_freq_(head_dim / 2) {
  const float base = static_cast<float>(theta);
  for (int i = 0; i < head_dim / 2; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    inv_freq_[i] = 1.0f / std::pow(base, exponent);
  }
}

void Rope::Apply(float* x, int heads, int pos) const {
  const int half = head_dim_ / 2;
  for (int i = 0; i < half; ++i) {
    const float angle = static_cast<float>(pos) * inv_freq_[i];
    const float c = std::cos(angle), s = std::sin(angle);
    for (int h = 0; h < heads; ++h) {
      float* v = x + h * head_dim_;
      const float a = v[i], b = v[i + half];
      v[i] = a * c - b * s;
      v[i + half] = b * c + a * s;
    }
  }
}

}  // namespace moe
