// include/cuda_runtime.h over the emulated device's queues (device_queue.h). An event's record is a flag, set by work queued on its stream; a wait on it is work that is
// done once the flag is set, and pulls the recording stream along until then.
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>

#include "tests/emulated_gpu/device_queue.h"

struct CUevent_st {
  std::shared_ptr<bool> reached;  // the last record's; null: never recorded
  int stream = -1;                // where it was recorded
};

namespace {

using moe::gpu::emulated::QueueOf;
using moe::gpu::emulated::Step;

// The runtime's last error, per host thread as CUDA keeps it: every call that fails sets it
// (cudaErrorNotReady included), cudaGetLastError reads and resets it, and a kernel launch's
// check reads it (gpu_check.h's Launched), so an error left in it fails the next launch.
thread_local cudaError_t last_error = cudaSuccess;

cudaError_t Returned(cudaError_t e) {
  if (e != cudaSuccess) last_error = e;
  return e;
}

// Runs `stream`'s work until `reached` is set, or the stream has to wait.
bool PullUntil(int stream, const std::shared_ptr<bool>& reached) {
  while (!*reached && Step(stream)) {
  }
  return *reached;
}

}  // namespace

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess:
      return "no error";
    case cudaErrorNotReady:
      return "device not ready";
    default:
      return "invalid argument";
  }
}

cudaError_t cudaGetLastError() {
  const cudaError_t e = last_error;
  last_error = cudaSuccess;
  return e;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned) {
  *stream = moe::gpu::emulated::StreamOf(moe::gpu::emulated::NewStream());
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (stream == nullptr) return Returned(cudaErrorInvalidValue);
  moe::gpu::emulated::DeleteStream(QueueOf(stream));
  return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned) {
  *event = new CUevent_st;
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete event;  // queued work holds its flags itself
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  auto hold = moe::gpu::emulated::Hold();  // (the flags are set by the emulator's thread too)
  auto reached = std::make_shared<bool>(false);
  event->reached = reached;
  event->stream = QueueOf(stream);
  moe::gpu::emulated::Enqueue(event->stream, [reached] { *reached = true; });
  return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned) {
  auto hold = moe::gpu::emulated::Hold();
  if (!event->reached) return cudaSuccess;
  moe::gpu::emulated::EnqueuePoll(
      QueueOf(stream), [reached = event->reached, from = event->stream] {
        return PullUntil(from, reached);
      });
  return cudaSuccess;
}

cudaError_t cudaEventQuery(cudaEvent_t event) {
  auto hold = moe::gpu::emulated::Hold();
  if (!event->reached) return cudaSuccess;
  return Returned(PullUntil(event->stream, event->reached) ? cudaSuccess : cudaErrorNotReady);
}
