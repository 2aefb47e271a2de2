#include "coordinator/runtime.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <iostream>

#include "common/cpu_affinity.h"
#include "common/identity.h"
#include "common/mapped_file.h"
#include "common/synthetic.h"
#include "common/tensor_names.h"
#include "worker/worker_loop.h"

namespace moe {
namespace {

bool IsDirectory(const std::string& path) {
  struct stat st;
  return !path.empty() && stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// The cores a rank computes on. With one micro-batch rank 0 and the workers take turns: the
// coordinator computes attention while the workers wait for rows, and the workers compute
// experts while it waits for answers. So rank 0 takes every core of its host, and the workers
// on a host share its cores. With two (ping-pong) they compute at once, and every rank on a
// host gets an equal share, of whole cores. Shares are pinned (common/cpu_affinity.h) unless
// pinning is off, the rank may not run on every core of the machine already (a launcher's
// binding, a cpuset), there are more ranks than cores to share, or --threads asks for more
// threads than a share has cores.
struct RankCores {
  int threads = 1;       // the default thread count
  std::vector<int> pin;  // the cores its threads are pinned to; empty: not pinned
};

RankCores ChooseCores(const Transport& t, int micro_batches, bool pin, int threads) {
  const int cores = ThreadPool::DefaultThreads();
  int index = -1, sharing = 0;
  for (int r = micro_batches == 1 ? 1 : 0; r < t.size(); ++r) {
    if (t.host(r) != t.host(t.rank())) continue;
    if (r == t.rank()) index = sharing;
    ++sharing;
  }
  if (index < 0 || sharing <= 1) return {cores, {}};
  // Fewer cores than ranks, or more threads asked for than a share has: the scheduler
  // balances them better than fixed shares would.
  const std::vector<int> allowed = AllowedCpus();
  const bool bound = static_cast<int>(allowed.size()) < OnlineCpus();
  std::vector<int> share = CpuShare(OrderedByCore(allowed), index, sharing);
  const int size = static_cast<int>(share.size());
  if (!pin || bound || static_cast<int>(allowed.size()) < sharing || threads > size)
    return {std::max(1, cores / sharing), {}};
  std::sort(share.begin(), share.end());
  return {size, share};
}

// Says why on this rank and ends the whole job (exit 3), where waiting for the others to agree
// could wait for ever.
void EndJob(Transport& t, const std::string& why) {
  std::cerr << "moe: error: " + why + "\n";
  t.Abort(3);
}

// What every rank loads before the ranks compare notes.
struct Loaded {
  ModelConfig config;
  std::string config_text;
  Placement placement;
  std::unique_ptr<Checkpoint> ckpt;
  std::unique_ptr<ExpertStore> store;
  ModelWeights weights;  // rank 0 only, on the CPU
  int device = -1;       // the GPU, or -1
  DeviceParts on_device;
};

// Bytes a rank puts on its GPU (bf16): rank 0's dense tensors and its expert slices.
uint64_t DeviceBytes(const ModelConfig& c, bool coordinator,
                     const std::vector<ExpertAssignment>& held) {
  uint64_t elements = 0;
  if (coordinator)
    for (const auto& [name, shape] : names::AllTensors(c)) {
      if (name.find(".experts.") != std::string::npos || name.find(".mlp.") != std::string::npos)
        continue;
      uint64_t n = 1;
      for (int64_t d : shape) n *= d;
      elements += n;
    }
  const int blocks = FfnBlocks(c.ffn);
  for (const ExpertAssignment& a : held)
    elements += uint64_t{3} * c.layers * c.hidden * (c.ffn / blocks) * (a.block_end - a.block_begin);
  return elements * 2;
}

// `where` ends the rank's report line (its cores).
Status LoadRank(const RuntimeOptions& o, const Transport& t, const std::string& where,
                Loaded* out) {
  if (o.threads < 0 || o.threads > 4096)
    return InvalidArgument("--threads must be in [0, 4096] (0 = automatic), got " +
                           std::to_string(o.threads));
  if (o.micro_batches != 1 && o.micro_batches != 2)
    return InvalidArgument("--micro-batches must be 1 or 2, got " + std::to_string(o.micro_batches));
  // (At most a week: the waits count in nanoseconds, and a day is already a hang.)
  if (!(o.rank_timeout > 0 && o.rank_timeout <= 7 * 24 * 3600))
    return InvalidArgument("--rank-timeout must be in (0, 604800] seconds, got " +
                           SecondsText(o.rank_timeout));
  if (!o.synthetic.empty()) {
    MOE_ASSIGN_OR_RETURN(out->config, SyntheticPreset(o.synthetic, o.synthetic_layers));
    out->config_text = o.synthetic + " " + out->config.Summary();
    out->ckpt = Checkpoint::Synthetic(out->config);
  } else {
    if (!IsDirectory(o.model_dir))
      return NotFound("model directory '" + o.model_dir +
                      "' does not exist; pass --model DIR with config.json and *.safetensors");
    MOE_ASSIGN_OR_RETURN(out->config_text, ReadFileToString(o.model_dir + "/config.json"));
    MOE_ASSIGN_OR_RETURN(out->config,
                         ParseModelConfig(out->config_text, o.model_dir + "/config.json"));
    MOE_ASSIGN_OR_RETURN(out->ckpt, Checkpoint::Open(o.model_dir));
  }
  MOE_ASSIGN_OR_RETURN(out->placement, LoadPlacement(out->config, t.size() - 1, o.placement_file));
  std::string unused;
  MOE_RETURN_IF_ERROR(ChooseGpuExchange(o.gpu_exchange, {}, &unused).status());  // the flag
  if (o.gpu_expert_streams < 1 || o.gpu_expert_streams > kMaxExpertStreams)
    return InvalidArgument("--gpu-expert-streams must be 1 to " +
                           std::to_string(kMaxExpertStreams) + ", got " +
                           std::to_string(o.gpu_expert_streams));
  MOE_ASSIGN_OR_RETURN(out->device, ChooseDevice(o.device, t));
  const bool gpu = out->device >= 0;
  const auto& held = out->placement.by_rank[t.rank()];
  // Weights are read in as they are taken, with a running count on a terminal (a bar where the
  // total is known: going to a GPU).
  const bool tty = isatty(STDERR_FILENO);
  const std::string who = "moe: rank " + std::to_string(t.rank()) + " on " + t.host(t.rank()) +
                          (gpu ? " to " + DeviceText(out->device) : "");
  const uint64_t total = gpu ? DeviceBytes(out->config, t.rank() == 0, held) : 0;
  auto show = [tty, who, total](uint64_t done, bool last) {
    if (!tty) return;
    std::string bar;
    if (total > 0) {
      const int filled = static_cast<int>(std::min<uint64_t>(20, done * 20 / total));
      bar = " [" + std::string(filled, '#') + std::string(20 - filled, '.') + "] ";
    }
    std::cerr << ("\r" + who + bar + " loaded " + std::to_string(done >> 20) + " MiB" +
                  (total ? " of " + std::to_string(total >> 20) + " MiB" : "") + (last ? "\n" : ""))
              << std::flush;
  };
  out->ckpt->set_progress([show](uint64_t done) { show(done, false); });
  if (t.rank() == 0 && !gpu) {
    MOE_ASSIGN_OR_RETURN(out->weights, LoadCoordinatorWeights(out->config, *out->ckpt));
  }
  if (!held.empty()) {
    MOE_ASSIGN_OR_RETURN(ExpertStore store,
                         ExpertStore::Load(out->config, *out->ckpt, held, /*take_weights=*/!gpu));
    out->store = std::make_unique<ExpertStore>(std::move(store));
  }
  if (gpu) {
    MOE_ASSIGN_OR_RETURN(out->on_device, LoadOnDevice(out->device, out->config, *out->ckpt,
                                                      t.rank() == 0, out->store.get(),
                                                      o.gpu_expert_streams));
  }
  out->ckpt->set_progress(nullptr);
  show(out->ckpt->taken_bytes(), true);
  // Account for every tensor: taken here, or owned by another rank.
  MOE_RETURN_IF_ERROR(out->ckpt->SkipUnclaimed(names::AllTensors(out->config)));
  if (out->config.tie_embeddings && out->ckpt->tensors().count(names::LmHead()))
    MOE_RETURN_IF_ERROR(out->ckpt->Skip(names::LmHead()));
  MOE_RETURN_IF_ERROR(out->ckpt->Finish());
  if (t.size() > 1 || gpu) {
    // One write per line, so the ranks' lines do not interleave.
    const int64_t bytes = gpu ? out->on_device.bytes
                              : (out->store ? out->store->bytes() : 0) +
                                    (t.rank() == 0 ? static_cast<int64_t>(out->ckpt->taken_bytes()) : 0);
    std::cerr << ("moe: rank " + std::to_string(t.rank()) + " on " + t.host(t.rank()) +
                  " holds " + std::to_string(bytes) + " bytes of weights" +
                  (gpu ? " on " + DeviceText(out->device) : "") + where + "\n");
  }
  return Status::Ok();
}

}  // namespace

StatusOr<std::unique_ptr<Runtime>> Runtime::Open(const RuntimeOptions& options,
                                                 Transport* transport) {
  static const std::unique_ptr<Transport> in_process = MakeInProcessTransport();
  if (transport == nullptr) transport = in_process.get();
  // Pinned before loading, so each rank's weights are first touched on (near) its own cores.
  RankCores cores =
      ChooseCores(*transport, options.micro_batches, options.pin_threads, options.threads);
  std::string where;
  if (!cores.pin.empty()) {
    const std::string error = PinCallingThread(cores.pin);
    const std::string list = (cores.pin.size() == 1 ? "core " : "cores ") + CpuListText(cores.pin);
    where = error.empty() ? "; pinned to " + list
                          : "; not pinned to " + list + ": " + error;
  }
  Loaded loaded;
  Status status = LoadRank(options, *transport, where, &loaded);
  // Every rank learns whether any rank failed, and which.
  if (Status s = transport->AgreeOnStatus(status); !s.ok()) return s;
  MOE_RETURN_IF_ERROR(transport->CheckSameEverywhere(BinaryFingerprint(), "the moe binary"));
  MOE_RETURN_IF_ERROR(transport->CheckSameEverywhere(
      ModelFingerprint(loaded.config_text, *loaded.ckpt), "the model (config.json and tensors)"));
  MOE_RETURN_IF_ERROR(transport->CheckSameEverywhere(PlacementFingerprint(loaded.placement),
                                                     "the expert placement (--placement)"));

  StatusOr<std::unique_ptr<GpuLink>> link = ConnectGpus(
      options.gpu_exchange, *transport, loaded.device, &loaded.on_device, options.rank_timeout);
  if (link.status().code() == StatusCode::kUnavailable) {
    // A rank died or hangs while the GPUs connect: agreeing on the status would wait for it
    // for ever, so each rank that saw it says so and ends the job.
    EndJob(*transport, link.status().message());
  }
  if (Status s = transport->AgreeOnStatus(link.status()); !s.ok()) return s;
  std::unique_ptr<GpuLink> gpu_link = std::move(link).value();

  auto pool =
      std::make_unique<ThreadPool>(options.threads > 0 ? options.threads : cores.threads);
  const int K = loaded.config.is_moe() ? loaded.config.experts_per_token : 1;
  std::unique_ptr<ExpertWorker> worker;
  std::unique_ptr<ExpertDevice> device_experts = std::move(loaded.on_device.experts);
  if (loaded.store)
    worker = std::make_unique<ExpertWorker>(loaded.store.get(), K, loaded.config.hidden, pool.get(),
                                            device_experts.get());

  if (transport->rank() != 0) {
    if (Status s = ServeExperts(*transport, *worker, options.rank_timeout); !s.ok()) {
      // Rank 0 waits for this rank's answer: say why it will not come, and end the job (a
      // worker that returned would wait in MPI_Finalize, and rank 0 would blame a hang).
      EndJob(*transport, "rank " + std::to_string(transport->rank()) + " on " +
                             transport->host(transport->rank()) + ": " + s.message());
    }
    return std::unique_ptr<Runtime>();
  }

  auto rt = std::unique_ptr<Runtime>(new Runtime());
  rt->transport_ = transport;
  rt->config_ = loaded.config;
  rt->placement_ = std::move(loaded.placement);
  rt->ckpt_ = std::move(loaded.ckpt);
  rt->store_ = std::move(loaded.store);
  rt->device_ = loaded.device;
  rt->gpu_link_ = std::move(gpu_link);
  rt->device_experts_ = std::move(device_experts);
  rt->pool_ = std::move(pool);
  rt->local_worker_ = std::move(worker);
  rt->stats_.Reset(rt->config_.layers, rt->placement_.experts, transport->size());
  rt->experts_ = std::make_unique<ExpertParallel>(rt->config_, &rt->placement_, transport,
                                                  rt->local_worker_.get(), options.rank_timeout,
                                                  &rt->stats_);
  rt->model_ = std::make_unique<Model>(rt->config_, std::move(loaded.weights), rt->experts_.get(),
                                       rt->pool_.get());
  if (loaded.on_device.forward) rt->model_->set_device(std::move(loaded.on_device.forward));
  rt->model_->set_stats(&rt->stats_);
  rt->model_->set_micro_batches(options.micro_batches);
  if (options.synthetic.empty()) {
    MOE_ASSIGN_OR_RETURN(rt->tokenizer_,
                         Tokenizer::LoadForModel(options.model_dir, rt->config_.vocab));
  }
  return rt;
}

Runtime::~Runtime() {
  if (experts_ == nullptr) return;
  if (experts_->broken()) transport_->Abort(3);  // workers are stuck mid-exchange: end the job
  if (Status s = experts_->Stop(); !s.ok()) {
    std::cerr << "moe: " << s.message() << "\n";
    transport_->Abort(3);
  }
}

}  // namespace moe
