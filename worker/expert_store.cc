#include "worker/expert_store.h"

#include "common/tensor_names.h"

namespace moe {
StatusOr<ExpertStore> ExpertStore::Load(const ModelConfig& config, Checkpoint& ckpt,
                                        const std::vector<ExpertAssignment>& owned) {
  ExpertStore store;
  store.blocks_ = FfnBlocks(config.ffn);
  store.block_size_ = config.ffn / store.blocks_;
  const int64_t D = config.hidden, F = config.ffn;
  store.layers_.resize(config.layers);
  for (int l = 0; l < config.layers; ++l) {
    for (const ExpertAssignment& a : owned) {
      std::string n1, n2, n3;
      if (config.is_moe()) {
        n1 = names::ExpertW(l, a.expert, 1);
        n2 = names::ExpertW(l, a.expert, 2);
        n3 = names::ExpertW(l, a.expert, 3);
      } else {
        n1 = names::MlpGate(l);
        n2 = names::MlpDown(l);
        n3 = names::MlpUp(l);
      }
      // Only the held blocks: ffn rows [f0, f1) of w1 and w3, the same columns of w2.
      const int64_t f0 = int64_t{a.block_begin} * store.block_size_;
      const int64_t f1 = int64_t{a.block_end} * store.block_size_;
      ExpertSlice s{a};
      MOE_ASSIGN_OR_RETURN(s.w1, ckpt.TakeMatrix(n1, {F, D}, f0, f1));
      MOE_ASSIGN_OR_RETURN(s.w2, ckpt.TakeMatrix(n2, {D, F}, 0, D, f0, f1));
      MOE_ASSIGN_OR_RETURN(s.w3, ckpt.TakeMatrix(n3, {F, D}, f0, f1));
      store.bytes_ += s.w1.bytes() + s.w2.bytes() + s.w3.bytes();
      store.layers_[l].push_back(s);
    }
  }
  return store;
}

}  // namespace moe
