// Everything one process needs to run the model: config, mapped checkpoint, weights, experts,
// thread pool, model and (when the checkpoint has one) the tokenizer.
#pragma once

#include <memory>
#include <string>

#include "common/checkpoint.h"
#include "common/model_config.h"
#include "common/thread_pool.h"
#include "coordinator/model.h"
#include "coordinator/tokenizer.h"
#include "worker/expert_store.h"
#include "worker/local_expert_backend.h"

namespace moe {

struct RuntimeOptions {
  std::string model_dir;  // Hugging Face checkpoint directory
  int threads = 0;        // 0 = every core this process may use
};

class Runtime {
 public:
  static StatusOr<std::unique_ptr<Runtime>> Open(const RuntimeOptions& options);

  const ModelConfig& config() const { return config_; }
  Model& model() { return *model_; }
  Checkpoint& checkpoint() { return *ckpt_; }
  // Null when the directory has no tokenizer.model.
  const Tokenizer* tokenizer() const { return tokenizer_.get(); }
  ThreadPool& pool() { return *pool_; }

 private:
  ModelConfig config_;
  std::unique_ptr<Checkpoint> ckpt_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<ExpertStore> experts_;
  std::unique_ptr<LocalExpertBackend> backend_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

}  // namespace moe
