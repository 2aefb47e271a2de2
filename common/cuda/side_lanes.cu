#include "common/cuda/side_lanes.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <utility>

#include "common/cuda/gpu_check.h"

namespace moe::gpu {

StatusOr<std::unique_ptr<SideLanes>> SideLanes::Create(int lanes) {
  auto s = std::unique_ptr<SideLanes>(new SideLanes());
  MOE_RETURN_IF_ERROR(Check(cudaEventCreateWithFlags(&s->forked_, cudaEventDisableTiming),
                            "create an event"));
  for (int i = 0; i < lanes; ++i) {
    // Non-blocking: the lanes wait for the device's (legacy default) stream only at Fork.
    cudaStream_t stream = nullptr;
    MOE_RETURN_IF_ERROR(
        Check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "create a stream"));
    s->lanes_.push_back({stream, nullptr});
    cublasHandle_t blas = nullptr;
    MOE_RETURN_IF_ERROR(CheckBlas(cublasCreate(&blas), "cublasCreate"));
    s->lanes_.back().blas = blas;
    MOE_RETURN_IF_ERROR(CheckBlas(cublasSetStream(blas, stream), "cublasSetStream"));
    cudaEvent_t done = nullptr;
    MOE_RETURN_IF_ERROR(
        Check(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "create an event"));
    s->done_.push_back(done);
  }
  return std::move(s);  // into the StatusOr
}

SideLanes::~SideLanes() {
  for (const Lane& lane : lanes_) {
    if (lane.blas) cublasDestroy(lane.blas);
    cudaStreamDestroy(lane.stream);
  }
  for (cudaEvent_t e : done_) cudaEventDestroy(e);
  if (forked_) cudaEventDestroy(forked_);
}

Status SideLanes::Fork(int n) {
  MOE_RETURN_IF_ERROR(Check(cudaEventRecord(forked_, nullptr), "record the fork"));
  for (int i = 0; i < n; ++i)
    MOE_RETURN_IF_ERROR(Check(cudaStreamWaitEvent(lanes_[i].stream, forked_, 0), "fork"));
  return Status::Ok();
}

Status SideLanes::Join(int n) {
  Status first = Status::Ok();  // every lane is tried, whatever failed before
  for (int i = 0; i < n; ++i) {
    Status s = Check(cudaEventRecord(done_[i], lanes_[i].stream), "record a join");
    if (s.ok()) s = Check(cudaStreamWaitEvent(nullptr, done_[i], 0), "join");
    if (first.ok()) first = s;
  }
  return first;
}

}  // namespace moe::gpu
