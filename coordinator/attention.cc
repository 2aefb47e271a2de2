#include "coordinator/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/kernels.h"

namespace moe {

void AttendChunk(const AttentionShape& shape, const float* q, const float* k, const float* v,
                 int C, int p0, KvCache& cache, int layer, float* out, ThreadPool& pool) {
  const int H = shape.heads, KV = shape.kv_heads, hd = shape.head_dim;
  const int group = H / KV;
  const int kv_width = KV * hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  // Rows of every position any query of the chunk may see: cache before p0, chunk after.
  const int first = shape.window > 0 ? std::max(0, p0 - shape.window + 1) : 0;
  std::vector<const float*> keys(p0 + C - first), values(p0 + C - first);
  for (int j = first; j < p0 + C; ++j) {
    keys[j - first] = j < p0 ? cache.K(layer, j) : k + int64_t{j - p0} * kv_width;
    values[j - first] = j < p0 ? cache.V(layer, j) : v + int64_t{j - p0} * kv_width;
  }

  const int64_t work = int64_t{C} * H * (p0 + C - first) * hd * 2;  // dots and axpys
  pool.ParallelFor(int64_t{C} * H, [&](int64_t begin, int64_t end) {
    std::vector<float> scores;
    for (int64_t task = begin; task < end; ++task) {
      const int t = static_cast<int>(task / H), h = static_cast<int>(task % H);
      const int p = p0 + t;
      const int lo = shape.window > 0 ? std::max(0, p - shape.window + 1) : 0;
      const int kv_off = (h / group) * hd;
      const float* qh = q + (int64_t{t} * H + h) * hd;
      scores.resize(p - lo + 1);
      for (int j = lo; j <= p; ++j) scores[j - lo] = Dot(qh, keys[j - first] + kv_off, hd) * scale;
      Softmax(scores.data(), p - lo + 1);
      float* o = out + (int64_t{t} * H + h) * hd;
      std::fill(o, o + hd, 0.0f);
      for (int j = lo; j <= p; ++j) Axpy(scores[j - lo], values[j - first] + kv_off, o, hd);
    }
  }, 1, work, 16);  // later queries see more keys: many chunks even out the threads

  // Then the chunk's keys and values join the cache (a rolling buffer keeps the last ones).
  for (int t = 0; t < C; ++t) {
    std::copy(k + int64_t{t} * kv_width, k + int64_t{t + 1} * kv_width, cache.K(layer, p0 + t));
    std::copy(v + int64_t{t} * kv_width, v + int64_t{t + 1} * kv_width, cache.V(layer, p0 + t));
  }
}

}  // namespace moe
