// The expert weights one rank holds: for every layer, the same list of (expert, block range).
#pragma once

#include <string>
#include <vector>

#include "common/checkpoint.h"
#include "common/model_config.h"
#include "common/placement.h"
#include "worker/expert_ffn.h"

namespace moe {

// The checkpoint names of expert `e`'s w1, w2 and w3 in layer `l` (a dense model's MLP for
// expert 0).
struct ExpertTensorNames {
  std::string w1, w2, w3;
};
ExpertTensorNames ExpertNames(const ModelConfig& config, int l, int e);

class ExpertStore {
 public:
  // Takes the assigned experts' tensors from the checkpoint (checking their shapes). Without
  // `take_weights` only the slices' layout is kept: their weights live on a device
  // (worker/gpu_experts.h), which takes the tensors itself.
  static StatusOr<ExpertStore> Load(const ModelConfig& config, Checkpoint& ckpt,
                                    const std::vector<ExpertAssignment>& owned,
                                    bool take_weights = true);

  int block_size() const { return block_size_; }
  int blocks() const { return blocks_; }
  // The slices held for `layer`, in assignment order.
  const std::vector<ExpertSlice>& layer(int l) const { return layers_[l]; }
  // Bytes of expert weights held (slices only).
  int64_t bytes() const { return bytes_; }

 private:
  int block_size_ = 0;
  int blocks_ = 0;
  int64_t bytes_ = 0;
  std::vector<std::vector<ExpertSlice>> layers_;  // [L][owned]
};

}  // namespace moe
