// The emulated device's cuBLAS (tests/emulated_gpu/): only what common/cuda/gpu_check.h names;
// the emulated GEMMs are loops (emulated_ops.cc).
#pragma once

typedef struct cublasContext* cublasHandle_t;
typedef enum { CUBLAS_STATUS_SUCCESS = 0 } cublasStatus_t;
