// Everything a rank needs to run the model. Rank 0 (the coordinator) gets the config, the
// non-expert weights, the model and the tokenizer; worker ranks load their expert slices and
// serve them until the coordinator stops them. One process: rank 0 holds the experts too.
#pragma once

#include <memory>
#include <string>

#include "common/checkpoint.h"
#include "common/model_config.h"
#include "common/placement.h"
#include "common/thread_pool.h"
#include "common/transport.h"
#include "coordinator/device_choice.h"
#include "coordinator/expert_parallel.h"
#include "coordinator/model.h"
#include "coordinator/run_stats.h"
#include "coordinator/tokenizer.h"
#include "worker/expert_store.h"
#include "worker/expert_worker.h"

namespace moe {

struct RuntimeOptions {
  std::string model_dir;        // Hugging Face checkpoint directory
  int threads = 0;              // 0: see ChooseCores in runtime.cc
  bool pin_threads = true;      // pin ranks that share a host to their own cores
  std::string placement_file;   // optional JSON expert placement
  double rank_timeout = 30.0;   // seconds a rank may take to answer before the job fails
  int micro_batches = 1;        // 2: ping-pong attention and experts (coordinator/model.cc)
  std::string synthetic;        // a preset (common/synthetic.h) instead of model_dir
  int synthetic_layers = 0;     // depth of the synthetic model (0 = the preset's)
  std::string device = "cpu";   // cpu, cuda or auto (coordinator/device_choice.h; the CLI: auto)
  std::string gpu_exchange = "auto";  // auto, nccl, host or mpi-link (ChooseGpuExchange)
  int gpu_expert_streams = 4;   // streams a GPU runs a layer's expert GEMMs on, side by side
};

class Runtime {
 public:
  // On a worker rank this loads the rank's experts, serves them until the coordinator says
  // stop, and returns null. On rank 0 it returns the loaded runtime. A null transport means
  // one process (the in-process transport).
  static StatusOr<std::unique_ptr<Runtime>> Open(const RuntimeOptions& options,
                                                 Transport* transport = nullptr);
  // Stops the workers; if a rank was lost, ends the whole job instead.
  ~Runtime();

  const ModelConfig& config() const { return config_; }
  Model& model() { return *model_; }
  Checkpoint& checkpoint() { return *ckpt_; }
  const Placement& placement() const { return placement_; }
  const Tokenizer* tokenizer() const { return tokenizer_.get(); }  // null without tokenizer.model
  ThreadPool& pool() { return *pool_; }
  RunStats& stats() { return stats_; }
  ExpertParallel& experts() { return *experts_; }
  Transport& transport() { return *transport_; }
  int device() const { return device_; }  // the GPU rank 0 computes on; -1: the CPU

 private:
  Runtime() = default;

  Transport* transport_ = nullptr;
  int device_ = -1;
  ModelConfig config_;
  Placement placement_;
  RunStats stats_;
  std::unique_ptr<Checkpoint> ckpt_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<ExpertStore> store_;
  std::unique_ptr<GpuLink> gpu_link_;  // outlives the device parts that use it
  std::unique_ptr<ExpertDevice> device_experts_;
  std::unique_ptr<ExpertWorker> local_worker_;
  std::unique_ptr<ExpertParallel> experts_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

}  // namespace moe
