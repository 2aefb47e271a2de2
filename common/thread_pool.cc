#include "common/thread_pool.h"

#include <algorithm>

#include "common/cpu_affinity.h"

namespace moe {
namespace {
constexpr int kSpins = 20000;  // about 50-100 us of pause instructions
}  // namespace

ThreadPool::ThreadPool(int threads) {
  for (int i = 1; i < std::max(threads, 1); ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  start_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

int ThreadPool::DefaultThreads() {
  const size_t allowed = AllowedCpus().size();
  if (allowed > 0) return static_cast<int>(allowed);
  return std::max(1u, std::thread::hardware_concurrency());
}

void ThreadPool::ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn,
                             int64_t grain, int64_t work, int chunks_per_thread) {
  if (n <= 0) return;
  if (work < kInlineWork) {
    fn(0, n);
    return;
  }
  grain = std::max<int64_t>(grain, 1);
  const int64_t units = (n + grain - 1) / grain;
  // Chunks taken in turn from a shared counter: a thread slowed by another job on its core
  // takes fewer, instead of everyone waiting for it at the end.
  const int64_t parts = std::min<int64_t>(units, int64_t{size()} * std::max(chunks_per_thread, 1));
  if (parts <= 1 || size() == 1) {
    fn(0, n);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = &fn;
    n_ = n;
    grain_ = grain;
    parts_ = parts;
    next_part_.store(0, std::memory_order_relaxed);
    pending_ = static_cast<int>(workers_.size());
    ++generation_;
  }
  start_cv_.notify_all();
  RunParts(fn);
  // Kernels are short: spin a little before sleeping on the condition variable.
  for (int spin = 0; spin < kSpins && pending_.load(std::memory_order_acquire) != 0; ++spin)
    __builtin_ia32_pause();
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [this] { return pending_ == 0; });
  job_ = nullptr;
}

void ThreadPool::RunParts(const std::function<void(int64_t, int64_t)>& fn) {
  const int64_t units = (n_ + grain_ - 1) / grain_;
  for (;;) {
    const int64_t p = next_part_.fetch_add(1, std::memory_order_relaxed);
    if (p >= parts_) return;
    const int64_t b = units * p / parts_ * grain_;
    const int64_t e = std::min(n_, units * (p + 1) / parts_ * grain_);
    fn(b, e);
  }
}

void ThreadPool::WorkerLoop() {
  uint64_t seen = 0;
  // Taken while the owner is inside ParallelFor, so a Park after it returns is never missed.
  uint64_t epoch = park_epoch_.load(std::memory_order_acquire);
  for (;;) {
    const std::function<void(int64_t, int64_t)>* job;
    // The next job usually follows within microseconds: spin a little before sleeping, unless
    // the owner parks the pool.
    for (int spin = 0; spin < kSpins && generation_.load(std::memory_order_acquire) == seen &&
                       park_epoch_.load(std::memory_order_relaxed) == epoch;
         ++spin)
      __builtin_ia32_pause();
    {
      std::unique_lock<std::mutex> lock(mu_);
      start_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
      epoch = park_epoch_.load(std::memory_order_relaxed);
    }
    RunParts(*job);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (--pending_ == 0) done_cv_.notify_one();
    }
  }
}

}  // namespace moe
