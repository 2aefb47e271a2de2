// Memory bandwidth probe (STREAM-like): read-only sum and triad a = b + s * c over arrays far
// beyond the last-level cache, on T threads pinned to nothing in particular. Prints the best
// of R repetitions in GB/s, as JSON. Usage: moe_probe_bandwidth [--threads T] [--mib M] [--reps R]
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

__attribute__((target("avx2"))) float SumRange(const float* p, size_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
  }
  float out[8];
  _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  float s = 0;
  for (float v : out) s += v;
  for (; i < n; ++i) s += p[i];
  return s;
}

template <typename F>
double Run(int threads, F body) {
  std::vector<std::thread> pool;
  const double t0 = Now();
  for (int t = 0; t < threads; ++t) pool.emplace_back(body, t);
  for (auto& th : pool) th.join();
  return Now() - t0;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = static_cast<int>(std::thread::hardware_concurrency()), reps = 5;
  size_t mib = 512;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--mib")) mib = std::strtoul(argv[i + 1], nullptr, 10);
    if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
  }
  const size_t n = mib * 1048576 / sizeof(float);
  float* a = static_cast<float*>(std::aligned_alloc(64, n * 4));
  float* b = static_cast<float*>(std::aligned_alloc(64, n * 4));
  float* c = static_cast<float*>(std::aligned_alloc(64, n * 4));
  // First touch by the threads that will read.
  Run(threads, [&](int t) {
    const size_t i0 = n * t / threads, i1 = n * (t + 1) / threads;
    for (size_t i = i0; i < i1; ++i) a[i] = 0, b[i] = 1.0f, c[i] = 2.0f;
  });
  double best_read = 0, best_triad = 0;
  volatile float sink = 0;
  for (int r = 0; r < reps; ++r) {
    std::vector<float> sums(threads);
    const double tr = Run(threads, [&](int t) {
      const size_t i0 = n * t / threads / 32 * 32, i1 = t + 1 == threads ? n : n * (t + 1) / threads / 32 * 32;
      sums[t] = SumRange(b + i0, i1 - i0);
    });
    for (float s : sums) sink = sink + s;
    best_read = std::max(best_read, n * 4.0 / tr / 1e9);
    const double tt = Run(threads, [&](int t) {
      const size_t i0 = n * t / threads, i1 = n * (t + 1) / threads;
      for (size_t i = i0; i < i1; ++i) a[i] = b[i] + 3.0f * c[i];
    });
    best_triad = std::max(best_triad, n * 12.0 / tt / 1e9);
  }
  std::printf("{\"threads\": %d, \"mib_per_array\": %zu, \"read_gb_s\": %.2f, \"triad_gb_s\": %.2f}\n",
              threads, mib, best_read, best_triad);
  return 0;
}
