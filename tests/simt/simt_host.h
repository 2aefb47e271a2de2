// Runs CUDA kernels on the host, for tests on machines without a GPU: a kernel header
// (common/cuda/*_kernels.cuh) compiles as C++ with these stand-ins, and Launch runs its grid one
// thread block at a time, each CUDA thread of the block on a host thread of its own, so
// __syncthreads, warp shuffles and shared memory behave as on the device (a warp's lanes meet
// at every shuffle; __shared__ arrays are statics, which one block at a time may share).
// A device promises no order among a grid's blocks, so neither does Launch: it runs them in a
// shuffled order, a different one each launch (the same from run to run).
// This checks a kernel's indexing, synchronisation and arithmetic, not its speed; the `gpu`
// tests run the same kernels on a device.
#pragma once

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

#include "common/dtype.h"

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}  // NOLINT
};

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)

namespace simt {

inline thread_local dim3 thread_index, block_index;
inline dim3 block_dim, grid_dim;

// The block's meeting points: all of its threads, and each warp's lanes with their values.
struct Block {
  explicit Block(int threads) : all(threads), lanes((threads + 31) / 32 * 32, 0.0) {
    for (int w = 0; w < (threads + 31) / 32; ++w) {
      const int size = std::min(32, threads - 32 * w);
      warps.push_back(std::make_unique<std::barrier<>>(size));
      alive.push_back(std::make_unique<std::atomic<int>>(size));
      sizes.push_back(size);
    }
  }
  std::barrier<> all;
  std::vector<std::unique_ptr<std::barrier<>>> warps;
  std::vector<std::unique_ptr<std::atomic<int>>> alive;  // lanes not yet returned, per warp
  std::vector<int> sizes;
  std::vector<double> lanes;  // holds any float or int exactly (ints up to 2^53)
};
inline Block* block = nullptr;
inline unsigned launches = 0;  // seeds each launch's block order

inline int FlatThread() {
  return static_cast<int>(thread_index.x +
                          block_dim.x * (thread_index.y + block_dim.y * thread_index.z));
}

// Every lane of the warp passes `v` and takes lane `from(lane)`'s. A full-warp shuffle with a
// lane already returned is undefined on a device: here it stops the test.
template <typename T, typename From>
T Exchange(T v, From from) {
  const int t = FlatThread(), warp = t / 32, lane = t % 32;
  if (block->alive[warp]->load() != block->sizes[warp]) {
    std::fprintf(stderr, "simt: a warp shuffle with lanes of warp %d already returned\n", warp);
    std::abort();
  }
  block->lanes[t] = static_cast<double>(v);
  block->warps[warp]->arrive_and_wait();
  const T out = static_cast<T>(block->lanes[warp * 32 + from(lane)]);
  block->warps[warp]->arrive_and_wait();
  return out;
}

// The threads a block's CUDA threads run on, kept from launch to launch: a launch of
// thousands of CUDA threads would spend its time making and ending std::threads.
class Crew {
 public:
  // Runs body(0) .. body(n - 1) each on a thread of its own, all at once; returns when all
  // have returned.
  void Run(int n, const std::function<void(int)>& body) {
    std::unique_lock<std::mutex> lock(mutex_);
    while (static_cast<int>(threads_.size()) < n) {
      const int t = static_cast<int>(threads_.size());
      threads_.emplace_back([this, t] { Serve(t); });
    }
    body_ = &body;
    wanted_ = n;
    left_ = n;
    ++generation_;
    start_.notify_all();
    finished_.wait(lock, [this] { return left_ == 0; });
    body_ = nullptr;
  }

 private:
  void Serve(int t) {
    unsigned seen = 0;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      start_.wait(lock, [&] { return generation_ != seen; });
      seen = generation_;
      if (t >= wanted_) continue;
      const std::function<void(int)>* body = body_;
      lock.unlock();
      (*body)(t);
      lock.lock();
      if (--left_ == 0) finished_.notify_one();
    }
  }

  std::mutex mutex_;
  std::condition_variable start_, finished_;
  std::vector<std::thread> threads_;  // never joined: the crew lives as long as the process
  const std::function<void(int)>* body_ = nullptr;
  int wanted_ = 0, left_ = 0;
  unsigned generation_ = 0;
};

inline Crew& TheCrew() {
  static Crew* crew = new Crew;
  return *crew;
}

// Runs kernel<<<grid, threads>>>(args...) on the host.
template <typename... Params, typename... Args>
void Launch(dim3 grid, dim3 threads, void (*kernel)(Params...), Args... args) {
  grid_dim = grid;
  block_dim = threads;
  const int n = static_cast<int>(threads.x * threads.y * threads.z);
  std::vector<unsigned> order(grid.x * grid.y * grid.z);
  std::iota(order.begin(), order.end(), 0u);
  std::shuffle(order.begin(), order.end(), std::mt19937(++launches));
  for (const unsigned i : order) {
    const unsigned x = i % grid.x, y = i / grid.x % grid.y, z = i / (grid.x * grid.y);
    Block b(n);
    block = &b;
    TheCrew().Run(n, [&](int t) {
      thread_index = dim3(t % threads.x, t / threads.x % threads.y, t / (threads.x * threads.y));
      block_index = dim3(x, y, z);
      kernel(args...);
      // A thread that is done no longer holds the others at their meeting points.
      b.alive[t / 32]->fetch_sub(1);
      b.warps[t / 32]->arrive_and_drop();
      b.all.arrive_and_drop();
    });
    block = nullptr;
  }
}

}  // namespace simt

#define threadIdx (::simt::thread_index)
#define blockIdx (::simt::block_index)
#define blockDim (::simt::block_dim)
#define gridDim (::simt::grid_dim)

inline void __syncthreads() { simt::block->all.arrive_and_wait(); }
template <typename T>
T __shfl_xor_sync(unsigned, T v, int mask) {
  return simt::Exchange(v, [mask](int lane) { return lane ^ mask; });
}
template <typename T>
T __shfl_sync(unsigned, T v, int src) {
  return simt::Exchange(v, [src](int) { return src; });
}
inline float __uint_as_float(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
// In double: a float sin and cos of one argument may be merged by the compiler into a call to
// sincosf, this very function.
inline void sincosf(float x, float* s, float* c) {
  *s = static_cast<float>(std::sin(double{x}));
  *c = static_cast<float>(std::cos(double{x}));
}
struct __nv_bfloat16 {
  uint16_t bits;
};
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return {moe::F32ToBf16(f)}; }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline int atomicAdd(int* p, int v) { return std::atomic_ref<int>(*p).fetch_add(v); }
template <typename T>
T __ldcg(const T* p) {
  return *p;
}
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float expf(float x) { return std::exp(x); }
inline float fmaxf(float a, float b) { return std::fmax(a, b); }
using std::max;
using std::min;
