#include "worker/expert_store.h"

#include "common/tensor_names.h"

namespace moe {

ExpertTensorNames ExpertNames(const ModelConfig& config, int l, int e) {
  if (config.is_moe())
    return {names::ExpertW(l, e, 1), names::ExpertW(l, e, 2), names::ExpertW(l, e, 3)};
  return {names::MlpGate(l), names::MlpDown(l), names::MlpUp(l)};
}

StatusOr<ExpertStore> ExpertStore::Load(const ModelConfig& config, Checkpoint& ckpt,
                                        const std::vector<ExpertAssignment>& owned,
                                        bool take_weights) {
  ExpertStore store;
  store.blocks_ = FfnBlocks(config.ffn);
  store.block_size_ = config.ffn / store.blocks_;
  const int64_t D = config.hidden, F = config.ffn;
  store.layers_.resize(config.layers);
  for (int l = 0; l < config.layers; ++l) {
    for (const ExpertAssignment& a : owned) {
      const ExpertTensorNames n = ExpertNames(config, l, a.expert);
      // Only the held blocks: ffn rows [f0, f1) of w1 and w3, the same columns of w2.
      const int64_t f0 = int64_t{a.block_begin} * store.block_size_;
      const int64_t f1 = int64_t{a.block_end} * store.block_size_;
      ExpertSlice s{a};
      if (take_weights) {
        MOE_ASSIGN_OR_RETURN(s.w1, ckpt.TakeMatrix(n.w1, {F, D}, f0, f1));
        MOE_ASSIGN_OR_RETURN(s.w2, ckpt.TakeMatrix(n.w2, {D, F}, 0, D, f0, f1));
        MOE_ASSIGN_OR_RETURN(s.w3, ckpt.TakeMatrix(n.w3, {F, D}, f0, f1));
      }
      store.bytes_ += s.w1.bytes() + s.w2.bytes() + s.w3.bytes();
      store.layers_[l].push_back(s);
    }
  }
  return store;
}

}  // namespace moe
