#include "coordinator/device_choice.h"

#include <dlfcn.h>

#include <cstdlib>
#include <iostream>
#include <mutex>

#include "common/private_library.h"
#include "coordinator/gpu_api.h"

namespace moe {
namespace {

// libmoe_gpu.so's entry points, loaded once; null (with the reason in *why) when absent.
// MOE_GPU_LIBRARY names another build of the GPU path to load instead: the tests' emulated
// device (tests/emulated_gpu/).
const GpuApi* Gpu(std::string* why) {
  static std::once_flag once;
  static const GpuApi* api = nullptr;
  static std::string error;
  std::call_once(once, [] {
    const char* other = std::getenv("MOE_GPU_LIBRARY");
    const std::string name = other != nullptr && *other != '\0' ? other : "libmoe_gpu.so";
    void* lib = nullptr;
    if (name != "libmoe_gpu.so") {
      lib = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (lib == nullptr) error = std::string("MOE_GPU_LIBRARY=") + name + ": " + dlerror();
    } else {
#if MOE_WITH_CUDA
      lib = OpenPrivateLibrary(name, MOE_GPU_LIB_DIR, 0, &error);
#else
      error = "this moe was built without the CUDA path (configure with -DMOE_CUDA=ON)";
      return;
#endif
    }
    if (lib != nullptr) {
      using Entry = const GpuApi* (*)();
      if (auto entry = reinterpret_cast<Entry>(dlsym(lib, "moe_gpu_api"))) api = entry();
      if (api) return;
      error = name + " has no moe_gpu_api";
    }
    error = "the GPU path did not load (" + error + ")";
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
                                   bool coordinator, const ExpertStore* layout,
                                   int expert_streams) {
  std::string why;
  const GpuApi* gpu = Gpu(&why);
  if (gpu == nullptr) return FailedPrecondition("cuda:" + std::to_string(device) + ": " + why);
  return gpu->load(config, ckpt, coordinator, layout, expert_streams);
}

StatusOr<GpuExchange> ChooseGpuExchange(const std::string& flag,
                                        const std::vector<RankDevice>& ranks,
                                        std::string* notice) {
  notice->clear();
  if (flag != "auto" && flag != "nccl" && flag != "host" && flag != "mpi-link")
    return InvalidArgument("--gpu-exchange must be auto, nccl, host or mpi-link, got '" + flag +
                           "'");
  if (flag == "host" || ranks.size() < 2) return GpuExchange::kHost;
  auto rank_on = [&](size_t r) {
    return "rank " + std::to_string(r) + " (" + ranks[r].host + ")";
  };
  // Why NCCL cannot carry this job, or "".
  std::string why;
  for (size_t r = 0; r < ranks.size() && why.empty(); ++r) {
    if (ranks[r].gpu.empty()) {
      why = rank_on(r) + " computes on the CPU";
    } else if (flag == "mpi-link") {
      continue;  // any GPU will do
    } else if (!ranks[r].link_error.empty()) {
      why = rank_on(r) + ": " + ranks[r].link_error;
    } else {
      for (size_t q = 0; q < r && why.empty(); ++q)
        if (ranks[q].host == ranks[r].host && ranks[q].gpu == ranks[r].gpu)
          why = "ranks " + std::to_string(q) + " and " + std::to_string(r) + " share the GPU " +
                ranks[r].gpu + " on " + ranks[r].host + ", and NCCL needs one GPU per rank";
    }
  }
  if (why.empty()) return flag == "mpi-link" ? GpuExchange::kMpiLink : GpuExchange::kNccl;
  if (flag == "nccl" || flag == "mpi-link")
    return FailedPrecondition("--gpu-exchange " + flag + ": " + why +
                              "; use --gpu-exchange host (or auto)" +
                              (flag == "nccl" ? ", or give every rank a GPU of its own" : ""));
  // auto: say why only where a GPU was there to link.
  bool any_gpu = false;
  for (const RankDevice& r : ranks) any_gpu = any_gpu || !r.gpu.empty();
  if (any_gpu) *notice = "moe: the expert exchange goes through host memory: " + why;
  return GpuExchange::kHost;
}

StatusOr<std::unique_ptr<GpuLink>> ConnectGpus(const std::string& flag, Transport& t, int device,
                                               DeviceParts* parts, double timeout_seconds) {
  const int R = t.size();
  if (R == 1) return std::unique_ptr<GpuLink>();  // nothing to exchange
  const GpuApi* gpu = device >= 0 ? Gpu(nullptr) : nullptr;
  // NCCL is loaded only where it may be used.
  const bool may_use_nccl = flag == "auto" || flag == "nccl";
  RankDevice mine{t.host(t.rank()), gpu ? gpu->bus_id(device) : "",
                  gpu && may_use_nccl ? gpu->link_unavailable() : ""};
  // Every rank's answer to rank 0 (host, GPU and NCCL error, NUL-separated), then rank 0's
  // decision to every rank: "H" host-staged, "E" + an error, "M" the MPI-carried link, or
  // "N" + the NCCL link's id.
  ByteRuns send, recv;
  send.counts.assign(R, 0);
  if (t.rank() != 0) {
    const std::string text = mine.host + '\0' + mine.gpu + '\0' + mine.link_error;
    send.data.assign(text.begin(), text.end());
    send.counts[0] = static_cast<int64_t>(text.size());
  }
  MOE_RETURN_IF_ERROR(t.Exchange(send, &recv, {"GPU survey"}, timeout_seconds));
  std::string decision;
  if (t.rank() == 0) {
    std::vector<RankDevice> ranks{mine};
    std::string bad;
    for (int r = 1; r < R; ++r) {
      const std::string text(reinterpret_cast<const char*>(recv.at(r)), recv.counts[r]);
      const size_t a = text.find('\0'), b = text.find('\0', a + 1);
      if (b == std::string::npos) {
        bad = "rank " + std::to_string(r) + " sent a bad device answer";
        break;
      }
      ranks.push_back({text.substr(0, a), text.substr(a + 1, b - a - 1), text.substr(b + 1)});
    }
    std::string notice;
    StatusOr<GpuExchange> choice =
        bad.empty() ? ChooseGpuExchange(flag, ranks, &notice) : Internal(bad);
    if (!notice.empty()) std::cerr << notice + "\n";
    // Every rank hears the decision, errors included, so none is left waiting.
    decision = !choice.ok()                        ? "E" + choice.status().message()
               : *choice == GpuExchange::kNccl    ? "N"
               : *choice == GpuExchange::kMpiLink ? "M"
                                                  : "H";
    if (decision == "N") {
      StatusOr<std::string> id = gpu->new_link_id();
      decision = id.ok() ? "N" + *id : "E" + id.status().message();
    }
    send.data.clear();
    for (int r = 1; r < R; ++r) {
      send.data.insert(send.data.end(), decision.begin(), decision.end());
      send.counts[r] = static_cast<int64_t>(decision.size());
    }
  }
  MOE_RETURN_IF_ERROR(t.Exchange(send, &recv, {"GPU link setup"}, timeout_seconds));
  if (t.rank() != 0) decision.assign(reinterpret_cast<const char*>(recv.at(0)), recv.counts[0]);
  if (decision.empty())
    return Internal("no GPU exchange decision reached rank " + std::to_string(t.rank()));
  if (decision[0] == 'E') return FailedPrecondition(decision.substr(1));
  if (decision[0] == 'H') return std::unique_ptr<GpuLink>();
  if (gpu == nullptr) return Internal("rank " + std::to_string(t.rank()) + " has no GPU to link");
  const bool nccl = decision[0] == 'N';
  MOE_ASSIGN_OR_RETURN(std::unique_ptr<GpuLink> link,
                       gpu->open_link(nccl, decision.substr(1), t, timeout_seconds, parts));
  if (t.rank() == 0)
    std::cerr << std::string("moe: the expert exchange goes ") +
                     (nccl ? "GPU to GPU over NCCL\n" : "over the GPU link, carried by MPI\n");
  return link;
}

}  // namespace moe
