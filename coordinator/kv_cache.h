// One sequence's key/value cache: per layer, `slots` rows of [KV * hd] f32 keys and values.
// Position p lives in slot p % slots. With slots == sliding window W this is Mistral's rolling
// buffer; with slots >= the sequence length it is a plain full cache.
#pragma once

#include <cstdint>
#include <vector>

namespace moe {

class KvCache {
 public:
  KvCache(int layers, int slots, int kv_width)
      : slots_(slots), width_(kv_width),
        k_(static_cast<size_t>(layers) * slots * kv_width),
        v_(static_cast<size_t>(layers) * slots * kv_width) {}

  int slots() const { return slots_; }
  float* K(int layer, int pos) { return &k_[Index(layer, pos)]; }
  float* V(int layer, int pos) { return &v_[Index(layer, pos)]; }
  const float* K(int layer, int pos) const { return &k_[Index(layer, pos)]; }
  const float* V(int layer, int pos) const { return &v_[Index(layer, pos)]; }

 private:
  size_t Index(int layer, int pos) const {
    return (static_cast<size_t>(layer) * slots_ + pos % slots_) * width_;
  }
  int slots_;
  int width_;
  std::vector<float> k_, v_;  // [L, slots, KV * hd]
};

}  // namespace moe
