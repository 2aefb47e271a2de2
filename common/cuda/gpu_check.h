// CUDA and cuBLAS results as Status, for the .cu files of common/cuda/.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "common/status.h"

namespace moe::gpu {

// A failed call's error is the caller's to handle, so it is also cleared from the runtime's
// last error, which the next launch's check reads (a sticky error, a fault, shows again).
inline Status Check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::Ok();
  cudaGetLastError();
  return Internal(std::string("CUDA ") + what + ": " + cudaGetErrorString(e));
}

// After a kernel launch: a bad configuration shows up here.
inline Status Launched(const char* what) { return Check(cudaGetLastError(), what); }

inline Status CheckBlas(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return Status::Ok();
  return Internal(std::string("cuBLAS ") + what + " failed with status " +
                  std::to_string(static_cast<int>(s)));
}

}  // namespace moe::gpu
