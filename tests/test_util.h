// Helpers shared by the model-level tests: paths to the committed test data and a comparison
// that reports the largest difference relative to the largest reference magnitude.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

namespace moe::testing {

inline std::string DataDir() { return MOE_TEST_DATA; }
inline std::string ModelDir(const std::string& name) { return DataDir() + "/models/" + name; }
inline std::string GoldenDir(const std::string& name) { return DataDir() + "/golden/" + name; }

// max |a - b| / max |b|.
inline double RelativeMaxError(const float* a, const float* b, size_t n) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < n; ++i) {
    diff = std::max(diff, std::fabs(double{a[i]} - b[i]));
    scale = std::max(scale, std::fabs(double{b[i]}));
  }
  return scale > 0 ? diff / scale : diff;
}

inline bool BitEqual(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace moe::testing
