// The expert weights one rank holds: for every layer, the same list of (expert, block range).
#pragma once

#include <vector>

#include "common/checkpoint.h"
#include "common/model_config.h"
#include "common/placement.h"
#include "worker/expert_ffn.h"

namespace moe {

class ExpertStore {
 public:
  // Takes the assigned experts' tensors from the checkpoint (checking their shapes).
  static StatusOr<ExpertStore> Load(const ModelConfig& config, Checkpoint& ckpt,
                                    const std::vector<ExpertAssignment>& owned);

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
