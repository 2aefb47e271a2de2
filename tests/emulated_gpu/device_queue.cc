#include "tests/emulated_gpu/device_queue.h"

#include <cstdint>
#include <map>
#include <set>
#include <vector>

namespace moe::gpu::emulated {
namespace {

struct Queues {
  std::vector<std::function<void()>> device;
  std::map<int, std::vector<std::function<void()>>> lanes;
  std::set<int> forked;
  std::map<uintptr_t, size_t> pinned;  // start -> bytes
};

Queues& Q() {
  static Queues q;
  return q;
}

}  // namespace

void Enqueue(int lane, std::function<void()> work) {
  if (lane < 0)
    Q().device.push_back(std::move(work));
  else if (Q().forked.count(lane))
    Q().lanes[lane].push_back(std::move(work));
  else
    work();  // an unforked lane waits for nothing the device's stream holds
}

void Fork(int lanes) {
  for (int i = 0; i < lanes; ++i) Q().forked.insert(i);
}

void Join(int lanes) {
  for (int i = 0; i < lanes; ++i) {
    auto& queued = Q().lanes[i];
    for (auto& work : queued) Q().device.push_back(std::move(work));
    queued.clear();
    Q().forked.erase(i);
  }
}

namespace {

// Taken out first: the work itself queues nothing, but a queue must not change under it.
void Run(std::vector<std::function<void()>>& queued) {
  std::vector<std::function<void()>> order;
  order.swap(queued);
  for (auto& work : order) work();
}

}  // namespace

void DrainDevice() { Run(Q().device); }

void Drain() {
  DrainDevice();
  for (auto& [lane, queued] : Q().lanes) Run(queued);
}

void AddPinned(const void* p, size_t bytes) { Q().pinned[reinterpret_cast<uintptr_t>(p)] = bytes; }
void RemovePinned(const void* p) { Q().pinned.erase(reinterpret_cast<uintptr_t>(p)); }
bool IsPinned(const void* p) {
  const auto at = reinterpret_cast<uintptr_t>(p);
  auto it = Q().pinned.upper_bound(at);
  if (it == Q().pinned.begin()) return false;
  --it;
  return at < it->first + it->second;
}

}  // namespace moe::gpu::emulated
