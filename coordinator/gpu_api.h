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
                                const ExpertStore* layout, int expert_streams);
  // The device's PCI bus id ("0000:3b:00.0"), which names one GPU across a host's processes.
  std::string (*bus_id)(int device);
  // The NCCL link (common/cuda/nccl_link.h): "" when it can be had here, else why not; a new
  // link id (rank 0). open_link: every rank at once, the NCCL link of `id` (nccl) or the
  // MPI-carried one over `transport` (common/cuda/mpi_link.h), handed to `parts`.
  std::string (*link_unavailable)();
  StatusOr<std::string> (*new_link_id)();
  StatusOr<std::unique_ptr<GpuLink>> (*open_link)(bool nccl, const std::string& id,
                                                  Transport& transport, double timeout_seconds,
                                                  DeviceParts* parts);
};

}  // namespace moe

extern "C" const moe::GpuApi* moe_gpu_api();
