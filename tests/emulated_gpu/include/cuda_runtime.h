// The emulated device's CUDA runtime (tests/emulated_gpu/): the few calls of it that host code
// compiled for the emulated device makes itself (common/cuda/nccl_link.cc: a stream of its
// own, and events between it and the device's stream), with CUDA's names and meanings, over
// the emulated device's queues (device_queue.h). Stream 0 is the device's stream.
#pragma once

typedef struct CUstream_st* cudaStream_t;
typedef struct CUevent_st* cudaEvent_t;

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorNotReady = 600,
};

constexpr unsigned cudaStreamNonBlocking = 0x1;
constexpr unsigned cudaEventDisableTiming = 0x2;

const char* cudaGetErrorString(cudaError_t error);
// The last error a call of this host thread returned, reset to cudaSuccess.
cudaError_t cudaGetLastError();
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t event);
// The event is reached once the work queued on `stream` so far is done.
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream);
// Later work on `stream` waits for the event's last record (none: no wait).
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags);
// cudaSuccess once reached, else cudaErrorNotReady; runs what the event waits for, as far as
// it can without waiting.
cudaError_t cudaEventQuery(cudaEvent_t event);
