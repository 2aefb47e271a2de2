// A persistent pool of worker threads. ParallelFor splits [0, n) into contiguous chunks, a few
// per thread, which the threads (the caller among them) take in turn. How work is split never
// changes what each index computes, so results do not depend on the thread count.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace moe {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);  // threads >= 1, the caller included
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(begin, end) over disjoint chunks covering [0, n); chunks are multiples of `grain`.
  // `work` (in multiply-adds, say) below kInlineWork runs on the calling thread: waking a thread
  // costs more than that, and much more when the machine is busy. Threads take up to
  // `chunks_per_thread` chunks each, in turn from a shared counter: more chunks leave less idle
  // time at the end when chunks differ in cost or a thread is slowed; fewer keep each thread's
  // stretch of memory long (streaming kernels).
  void ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain = 1,
                   int64_t work = INT64_MAX, int chunks_per_thread = 4);
  static constexpr int64_t kInlineWork = 1 << 16;

  static int DefaultThreads();  // the cores this process may use

  // The caller is about to wait for other processes on this host (the workers computing
  // experts): idle threads stop spinning and sleep now, leaving the cores to them.
  void Park() { park_epoch_.fetch_add(1, std::memory_order_release); }

 private:
  void WorkerLoop();
  void RunParts(const std::function<void(int64_t, int64_t)>& fn);  // takes chunks until none left

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable start_cv_, done_cv_;
  // The current job: chunk p covers units [units p / parts, units (p + 1) / parts) of `grain`
  // indices, units = ceil(n / grain).
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t n_ = 0, grain_ = 1, parts_ = 0;
  std::atomic<int64_t> next_part_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<uint64_t> park_epoch_{0};
  bool stop_ = false;
};

}  // namespace moe
