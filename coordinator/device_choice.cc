#include "coordinator/device_choice.h"

#include <dlfcn.h>

#include <iostream>
#include <mutex>

#include "common/private_library.h"
#include "coordinator/gpu_api.h"

namespace moe {
namespace {

// libmoe_gpu.so's entry points, loaded once; null (with the reason in *why) when absent.
const GpuApi* Gpu(std::string* why) {
  static std::once_flag once;
  static const GpuApi* api = nullptr;
  static std::string error;
  std::call_once(once, [] {
#if MOE_WITH_CUDA
    if (void* lib = OpenPrivateLibrary("libmoe_gpu.so", MOE_GPU_LIB_DIR, 0, &error)) {
      using Entry = const GpuApi* (*)();
      if (auto entry = reinterpret_cast<Entry>(dlsym(lib, "moe_gpu_api"))) api = entry();
      if (api) return;
      error = "libmoe_gpu.so has no moe_gpu_api";
    }
    error = "the GPU path did not load (" + error + ")";
#else
    error = "this moe was built without the CUDA path (configure with -DMOE_CUDA=ON)";
#endif
  });
  if (why) *why = error;
  return api;
}

}  // namespace

StatusOr<int> ChooseDevice(const std::string& flag, const Transport& t) {
  if (flag == "cpu") return -1;
  if (flag != "cuda" && flag != "auto")
    return InvalidArgument("--device must be cpu, cuda or auto, got '" + flag + "'");
  std::string why;
  if (const GpuApi* gpu = Gpu(&why)) {
    const int count = gpu->device_count();
    if (count > 0) {
      int local = 0;  // this rank's place among its host's ranks
      for (int r = 0; r < t.rank(); ++r) local += t.host(r) == t.host(t.rank());
      const int device = local % count;
      MOE_RETURN_IF_ERROR(gpu->set_device(device));
      return device;
    }
    why = gpu->no_device_reason();
  }
  if (flag == "cuda")
    return FailedPrecondition("--device cuda on rank " + std::to_string(t.rank()) + " (" +
                              t.host(t.rank()) + "): " + why + "; use --device cpu or auto");
  std::cerr << ("moe: rank " + std::to_string(t.rank()) + ": " + why + "; running on the CPU\n");
  return -1;
}

std::string DeviceText(int device) {
  if (device < 0) return "cpu";
  const GpuApi* gpu = Gpu(nullptr);
  return "cuda:" + std::to_string(device) + (gpu ? " (" + gpu->device_name(device) + ")" : "");
}

StatusOr<DeviceParts> LoadOnDevice(int device, const ModelConfig& config, Checkpoint& ckpt,
                                   bool coordinator, const ExpertStore* layout) {
  std::string why;
  const GpuApi* gpu = Gpu(&why);
  if (gpu == nullptr) return FailedPrecondition("cuda:" + std::to_string(device) + ": " + why);
  return gpu->load(config, ckpt, coordinator, layout);
}

}  // namespace moe
