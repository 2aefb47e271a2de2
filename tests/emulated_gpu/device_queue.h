// The emulated device's streams (tests/emulated_gpu/): work queued on a stream runs only when
// the host waits for it (a synchronize, a synchronous copy, a free), as late as a device may
// run it, so host code that reads a result, or rewrites a pinned buffer a queued copy still
// reads, before it waits gets the wrong bytes, as it would on a device that is slow that day.
// The side lanes' work joins the device's stream at SideLanes::Join; work on a lane never
// joined runs after everything on the device's stream, which a device may also do. One host
// thread drives the device, as in moe.
#pragma once

#include <cstddef>
#include <functional>

namespace moe::gpu::emulated {

// Queues `work` on the device's stream (lane -1) or on side lane `lane`.
void Enqueue(int lane, std::function<void()> work);
// The side lanes 0 .. n-1's queued work, after what the device's stream holds so far.
void Join(int lanes);
// Runs everything queued: the device's stream, then any lane's work never joined.
void Drain();

// Pinned host memory (AllocHost): an asynchronous copy reads or writes it when it runs; other
// host memory is read when the copy is queued and written before it returns, as CUDA does.
void AddPinned(const void* p, size_t bytes);
void RemovePinned(const void* p);
bool IsPinned(const void* p);

}  // namespace moe::gpu::emulated
