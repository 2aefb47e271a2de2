// Helpers shared by the model-level tests: paths to the committed test data and a comparison
// that reports the largest difference relative to the largest reference magnitude.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/sum_plan.h"

namespace moe::testing {

inline std::string DataDir() { return MOE_TEST_DATA; }
inline std::string ModelDir(const std::string& name) { return DataDir() + "/models/" + name; }
inline std::string GoldenDir(const std::string& name) { return DataDir() + "/golden/" + name; }

// max |a - b| / max |b|; infinite where a holds a NaN or an infinity.
inline double RelativeMaxError(const float* a, const float* b, size_t n) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(a[i])) return INFINITY;  // a NaN would slip past std::max
    diff = std::max(diff, std::fabs(double{a[i]} - b[i]));
    scale = std::max(scale, std::fabs(double{b[i]}));
  }
  return scale > 0 ? diff / scale : diff;
}

// n normal values with this seed and standard deviation.
inline std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// A plan over V vectors of D floats: outputs with 0 to 3 terms of 1 to 3 sources each.
inline SumPlan RandomSumPlan(int outputs, int V, int D, uint32_t seed) {
  std::mt19937 rng(seed);
  SumPlan plan;
  for (int o = 0; o < outputs; ++o) {
    plan.AddOutput();
    for (int k = 0; k < o % 4; ++k) {
      plan.AddTerm(std::uniform_real_distribution<float>(-2, 2)(rng));
      for (int i = 0; i <= (o + k) % 3; ++i) plan.AddSource(static_cast<int64_t>(rng() % V) * D);
    }
  }
  return plan;
}

inline std::vector<uint16_t> ToBf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = F32ToBf16(v[i]);
  return out;
}

inline bool BitEqual(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// A fresh directory under the system's temporary directory, removed with its contents when
// this goes out of scope.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& prefix) {
    std::string tmpl = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
    if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + tmpl);
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace moe::testing
