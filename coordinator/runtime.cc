#include "coordinator/runtime.h"

#include <sys/stat.h>

namespace moe {

StatusOr<std::unique_ptr<Runtime>> Runtime::Open(const RuntimeOptions& options) {
  struct stat st;
  if (options.model_dir.empty() || stat(options.model_dir.c_str(), &st) != 0 ||
      !S_ISDIR(st.st_mode))
    return NotFound("model directory '" + options.model_dir +
                    "' does not exist; pass --model DIR with config.json and *.safetensors");
  auto rt = std::unique_ptr<Runtime>(new Runtime());
  MOE_ASSIGN_OR_RETURN(rt->config_, LoadModelConfig(options.model_dir));
  MOE_ASSIGN_OR_RETURN(rt->ckpt_, Checkpoint::Open(options.model_dir));
  MOE_ASSIGN_OR_RETURN(ModelWeights weights, LoadCoordinatorWeights(rt->config_, *rt->ckpt_));
  MOE_ASSIGN_OR_RETURN(ExpertStore experts,
                       ExpertStore::Load(rt->config_, *rt->ckpt_,
                                         ExpertStore::AllExperts(rt->config_)));
  MOE_RETURN_IF_ERROR(rt->ckpt_->Finish());
  rt->experts_ = std::make_unique<ExpertStore>(std::move(experts));
  rt->pool_ = std::make_unique<ThreadPool>(options.threads > 0 ? options.threads
                                                               : ThreadPool::DefaultThreads());
  rt->backend_ = std::make_unique<LocalExpertBackend>(rt->experts_.get(), rt->pool_.get());
  rt->model_ = std::make_unique<Model>(rt->config_, std::move(weights), rt->backend_.get(),
                                       rt->pool_.get());
  const std::string tok_path = options.model_dir + "/tokenizer.model";
  if (stat(tok_path.c_str(), &st) == 0) {
    MOE_ASSIGN_OR_RETURN(rt->tokenizer_, Tokenizer::Load(tok_path));
    if (rt->tokenizer_->vocab_size() > rt->config_.vocab)
      return FailedPrecondition(tok_path + ": the tokenizer has " +
                                std::to_string(rt->tokenizer_->vocab_size()) +
                                " pieces but config.json has vocab_size " +
                                std::to_string(rt->config_.vocab) + "; they belong to different models");
  }
  return rt;
}

}  // namespace moe
