// Which device a rank computes on (--device cpu|cuda|auto), and loading its part of the model
// there. Built without the CUDA path, every answer is the CPU (auto) or an error (cuda).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/checkpoint.h"
#include "common/model_config.h"
#include "common/transport.h"
#include "coordinator/model.h"
#include "worker/expert_store.h"
#include "worker/expert_worker.h"

namespace moe {

// The GPU this rank uses, or -1 for the CPU. auto: a GPU when one is visible, else the CPU with
// a one-line notice on stderr; cuda: a GPU or an error that says why there is none. Ranks on
// one host take the host's GPUs in turn (by their order among the host's ranks).
StatusOr<int> ChooseDevice(const std::string& flag, const Transport& transport);
// "cpu", or "cuda:0 (NVIDIA H100 80GB HBM3, 79.1 GiB)".
std::string DeviceText(int device);

// What a rank holds on its GPU: the coordinator's forward pass (rank 0) and its expert slices.
struct DeviceParts {
  std::unique_ptr<DeviceForward> forward;
  std::unique_ptr<ExpertDevice> experts;
  int64_t bytes = 0;
};
// Uploads them from the checkpoint (the expert slices `layout` lists, when not null). The
// experts' GEMMs of a layer run on `expert_streams` streams side by side (--gpu-expert-streams).
constexpr int kMaxExpertStreams = 8;
StatusOr<DeviceParts> LoadOnDevice(int device, const ModelConfig& config, Checkpoint& ckpt,
                                   bool coordinator, const ExpertStore* layout,
                                   int expert_streams);

// How the expert rows and answers travel between the ranks' GPUs (--gpu-exchange): straight
// between the GPUs over NCCL when every rank has a GPU of its own and NCCL loads (auto, nccl);
// else through host memory inside the Transport's messages (host; auto says why, in one line).
// mpi-link runs the NCCL path's protocol with MPI carrying the rows through host memory, for
// every rank on a GPU, shared or not: the NCCL path's code, testable on one GPU.
enum class GpuExchange { kHost, kNccl, kMpiLink };
struct RankDevice {
  std::string host;
  std::string gpu;         // the PCI bus id of its GPU; "" on the CPU
  std::string link_error;  // "" when the GPU link (NCCL) can be had there
};
// The choice from every rank's answer. An error when `flag` asks for what cannot be had;
// *notice: a line for stderr, or "".
StatusOr<GpuExchange> ChooseGpuExchange(const std::string& flag,
                                        const std::vector<RankDevice>& ranks,
                                        std::string* notice);
// Every rank at once, after loading (`device`: the rank's GPU, or -1): agrees on the exchange,
// and for NCCL opens the link and hands it to the rank's device parts. Null: no link (one
// rank, or host-staged).
StatusOr<std::unique_ptr<GpuLink>> ConnectGpus(const std::string& flag, Transport& transport,
                                               int device, DeviceParts* parts,
                                               double timeout_seconds);

}  // namespace moe
