// The GPU path's entry points. They live in libmoe_gpu.so, which the moe binary loads with
// dlopen and a private symbol scope only when a GPU is asked for: the CUDA libraries then stay
// out of the process's global symbol scope (libcublas there breaks the metrics server's HTTP
// library), and a moe binary runs where no CUDA runtime is installed. The library takes the
// rest of moe's symbols from the executable (built with exported symbols).
#pragma once

#include <string>

#include "coordinator/device_choice.h"

namespace moe {

struct GpuApi {
  int (*device_count)();
  std::string (*no_device_reason)();
  Status (*set_device)(int device);
  std::string (*device_name)(int device);
  StatusOr<DeviceParts> (*load)(const ModelConfig& config, Checkpoint& ckpt, bool coordinator,
                                const ExpertStore* layout);
};

}  // namespace moe

extern "C" const moe::GpuApi* moe_gpu_api();
