#include "tests/emulated_gpu/device_queue.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <set>
#include <thread>

namespace moe::gpu::emulated {
namespace {

struct Stream {
  std::deque<std::function<bool()>> work;
  bool running = false;  // its front is being asked, further up the stack
  bool deleted = false;  // goes once its work is done
};

struct Queues {
  std::recursive_mutex mutex;
  Stream device;
  std::map<int, Stream> lanes;  // forked lanes' work, and work on lanes never joined
  std::set<int> forked;
  std::map<int, Stream> made;
  int next_made = kFirstStream;
  std::map<uintptr_t, size_t> pinned;  // start -> bytes
};

// Never destroyed: the made streams' thread may outlive main's statics.
Queues& Q() {
  static Queues* q = new Queues;
  return *q;
}

// Steps `stream` until it is empty or its front has to wait.
void Pull(int stream) {
  auto hold = Hold();
  while (Step(stream)) {
  }
}

// Runs the made streams' work while any is made, as a GPU runs a stream the host does not wait
// for.
class MadeStreamRunner {
 public:
  // With the mutex held, as a stream is made.
  void Start() {
    if (running_) return;
    if (thread_.joinable()) thread_.join();  // it has left its loop (running_ is false)
    running_ = true;
    thread_ = std::thread([this] {
      for (;;) {
        bool idle = true;
        {
          auto hold = Hold();
          for (auto it = Q().made.begin(); it != Q().made.end();) {
            Pull(it->first);
            idle = idle && it->second.work.empty();
            it = it->second.deleted && it->second.work.empty() ? Q().made.erase(it)
                                                                : std::next(it);
          }
          if (Q().made.empty() || stop_) {  // the last made stream is gone
            running_ = false;
            return;
          }
        }
        // Between steps the streams are mostly empty: look less often then.
        std::this_thread::sleep_for(std::chrono::microseconds(idle ? 2000 : 200));
      }
    });
  }
  ~MadeStreamRunner() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::atomic<bool> stop_{false}, running_{false};
  std::thread thread_;
};

MadeStreamRunner& Runner() {
  static MadeStreamRunner runner;
  return runner;
}

Stream& Find(int stream) {
  if (stream < 0) return Q().device;
  if (stream < kFirstStream) return Q().lanes[stream];
  auto it = Q().made.find(stream);
  if (it == Q().made.end()) {
    std::fprintf(stderr, "emulated device: work queued on stream %d, which does not exist\n",
                 stream);
    std::abort();
  }
  return it->second;
}

// A device waits for nothing the host does; a host wait with no deadline for work that waits
// for a peer that never comes would never return on a GPU. Here it ends the process, saying
// so, after longer than any rank timeout the tests give.
constexpr double kHangSeconds = 300;

// Asks `done` until it is true, backing off between tries so peer processes get the cores.
void WaitUntil(const std::function<bool()>& done, const char* what) {
  const auto start = std::chrono::steady_clock::now();
  auto pause = std::chrono::microseconds(20);
  while (!done()) {
    if (std::chrono::steady_clock::now() - start > std::chrono::duration<double>(kHangSeconds)) {
      std::fprintf(stderr,
                   "emulated device: the host has waited %.0f s for %s, whose queued work waits "
                   "for another stream's that never ends (an NCCL move whose peer never came?); "
                   "on a GPU this wait would never return\n",
                   kHangSeconds, what);
      std::fflush(stderr);
      std::_Exit(70);
    }
    std::this_thread::sleep_for(pause);  // the mutex is free here
    pause = std::min(pause * 2, std::chrono::microseconds(1000));
  }
}

}  // namespace

std::unique_lock<std::recursive_mutex> Hold() {
  return std::unique_lock<std::recursive_mutex>(Q().mutex);
}

void Enqueue(int stream, std::function<void()> work) {
  EnqueuePoll(stream, [work = std::move(work)] {
    work();
    return true;
  });
}

void EnqueuePoll(int stream, std::function<bool()> work) {
  auto hold = Hold();
  // An unforked lane waits for nothing the device's stream holds: its work runs at once.
  if (stream >= 0 && stream < kFirstStream && !Q().forked.count(stream) &&
      Find(stream).work.empty() && work())
    return;
  Find(stream).work.push_back(std::move(work));
}

int NewStream() {
  auto hold = Hold();
  const int id = Q().next_made++;
  Q().made[id];
  Runner().Start();
  return id;
}

// As cudaStreamDestroy, which lets the stream's work finish first, without waiting for it
// (the emulator's thread ends it then).
void DeleteStream(int stream) {
  auto hold = Hold();
  Find(stream).deleted = true;
}

bool Step(int stream) {
  auto hold = Hold();
  Stream& s = Find(stream);
  if (s.running || s.work.empty()) return false;
  s.running = true;
  const bool done = s.work.front()();  // (a deque keeps its front in place as work is added)
  s.running = false;
  if (done) s.work.pop_front();
  return done;
}

void Fork(int lanes) {
  auto hold = Hold();
  for (int i = 0; i < lanes; ++i) Q().forked.insert(i);
}

void Join(int lanes) {
  auto hold = Hold();
  for (int i = 0; i < lanes; ++i) {
    auto& queued = Q().lanes[i].work;
    for (auto& work : queued) Q().device.work.push_back(std::move(work));
    queued.clear();
    Q().forked.erase(i);
  }
}

void DrainDevice() {
  WaitUntil(
      [] {
        auto hold = Hold();
        Pull(-1);
        return Q().device.work.empty();
      },
      "the device's stream");
}

void Drain() {
  WaitUntil(
      [] {
        auto hold = Hold();
        Pull(-1);
        if (!Q().device.work.empty()) return false;
        bool empty = true;
        for (auto* streams : {&Q().lanes, &Q().made})
          for (auto& [id, s] : *streams) {
            Pull(id);
            empty = empty && s.work.empty();
          }
        return empty;
      },
      "the whole device");
}

void AddPinned(const void* p, size_t bytes) {
  auto hold = Hold();
  Q().pinned[reinterpret_cast<uintptr_t>(p)] = bytes;
}
void RemovePinned(const void* p) {
  auto hold = Hold();
  Q().pinned.erase(reinterpret_cast<uintptr_t>(p));
}
bool IsPinned(const void* p) {
  auto hold = Hold();
  const auto at = reinterpret_cast<uintptr_t>(p);
  auto it = Q().pinned.upper_bound(at);
  if (it == Q().pinned.begin()) return false;
  --it;
  return at < it->first + it->second;
}

}  // namespace moe::gpu::emulated
