// The emulated device's streams (tests/emulated_gpu/): work queued on a stream runs only when
// the host waits for it (a synchronize, a synchronous copy, a free, an event query), as late as
// a device may run it, so host code that reads a result, or rewrites a pinned buffer a queued
// copy still reads, before it waits gets the wrong bytes, as it would on a device that is slow
// that day. A side lane's work waits for the device's stream only once the lane is forked
// (SideLanes::Fork), else it runs at once, ahead of the device's queued work; it joins the
// device's stream at SideLanes::Join, and work on a lane never joined runs only when the host
// waits for the whole device, after everything on the device's stream. A device may do each
// of these. Streams made with cudaStreamCreate (the NCCL link's) have queues of their own,
// whose work may wait for another stream's (an event): such work is asked again until it is
// done, pulling the stream it waits for along. A made stream's work runs as soon as it can,
// on a thread of the emulator's, as a GPU's would while the host is busy elsewhere (waiting
// for a peer over MPI, say); it pulls the device's stream only as far as its events need. One
// host thread drives the device, as in moe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>

struct CUstream_st;

namespace moe::gpu::emulated {

// Streams: -1 the device's; 0 .. 999 side lanes; kFirstStream and up, made streams. A CUDA
// stream handle is the number plus one (null: the device's stream).
constexpr int kFirstStream = 1000;
inline int QueueOf(const CUstream_st* s) {
  return static_cast<int>(reinterpret_cast<uintptr_t>(s)) - 1;
}
inline CUstream_st* StreamOf(int queue) {
  return reinterpret_cast<CUstream_st*>(static_cast<uintptr_t>(queue + 1));
}

// Every call here holds this, as does the emulator's thread while it runs work; the emulated
// NCCL holds it too while it reads or changes its communicators.
std::unique_lock<std::recursive_mutex> Hold();

// Queues `work` on the device's stream (-1), a side lane or a made stream.
void Enqueue(int stream, std::function<void()> work);
// Queues work that may have to wait: asked when it reaches the front, it returns true once
// done, or false while what it waits for is not there yet (it is asked again later).
void EnqueuePoll(int stream, std::function<bool()> work);
// A stream of its own (cudaStreamCreate), and its end: it goes once its work is done.
int NewStream();
void DeleteStream(int stream);
// Runs `stream`'s front work; true if it was done (and left the queue), false if the stream
// is empty, its front has to wait, or it is already running further up. Never waits itself.
bool Step(int stream);

// Side lanes 0 .. n-1 wait for the device's stream from now on, until they are joined.
void Fork(int lanes);
// The side lanes 0 .. n-1's queued work, after what the device's stream holds so far.
void Join(int lanes);
// Runs the device's stream's queued work (what a synchronous copy waits for).
void DrainDevice();
// Runs everything queued: the device's stream, any lane's work never joined, and the made
// streams (what a synchronize or a free waits for).
void Drain();

// Pinned host memory (AllocHost): an asynchronous copy reads or writes it when it runs; other
// host memory is read when the copy is queued and written before it returns, as CUDA does.
void AddPinned(const void* p, size_t bytes);
void RemovePinned(const void* p);
bool IsPinned(const void* p);

}  // namespace moe::gpu::emulated
