// The emulated device's streams (tests/emulated_gpu/): work queued on a stream runs only when
// the host waits for it (a synchronize, a synchronous copy, a free), as late as a device may
// run it, so host code that reads a result, or rewrites a pinned buffer a queued copy still
// reads, before it waits gets the wrong bytes, as it would on a device that is slow that day.
// A side lane's work waits for the device's stream only once the lane is forked
// (SideLanes::Fork), else it runs at once, ahead of the device's queued work; it joins the
// device's stream at SideLanes::Join, and work on a lane never joined runs only when the host
// waits for the whole device, after everything on the device's stream. A device may do each
// of these. One host thread drives the device, as in moe.
#pragma once

#include <cstddef>
#include <functional>

namespace moe::gpu::emulated {

// Queues `work` on the device's stream (lane -1) or on side lane `lane`.
void Enqueue(int lane, std::function<void()> work);
// Side lanes 0 .. n-1 wait for the device's stream from now on, until they are joined.
void Fork(int lanes);
// The side lanes 0 .. n-1's queued work, after what the device's stream holds so far.
void Join(int lanes);
// Runs the device's stream's queued work (what a synchronous copy waits for).
void DrainDevice();
// Runs everything queued: the device's stream, then any lane's work never joined (what a
// synchronize or a free waits for).
void Drain();

// Pinned host memory (AllocHost): an asynchronous copy reads or writes it when it runs; other
// host memory is read when the copy is queued and written before it returns, as CUDA does.
void AddPinned(const void* p, size_t bytes);
void RemovePinned(const void* p);
bool IsPinned(const void* p);

}  // namespace moe::gpu::emulated
