// Key/value caches. Index legend: L = layers, KV = kv heads, hd = head dim, B = block size.
// A cache maps (layer, position) to a row of KV * hd f32 keys and one of values.
//
// RollingKvCache: one sequence, `slots` rows per layer, position p in slot p % slots. With
//   slots == the sliding window W this is Mistral's rolling buffer; with slots >= the sequence
//   length, a plain full cache.
// PagedKvCache: one sequence's block table over a shared KvBlockPool of fixed-size blocks
//   (B positions of every layer each). Blocks are taken from the pool's free list as the
//   sequence grows; with a sliding window, blocks whose positions all fell out of the window go
//   back to the pool.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace moe {

class KvCache {
 public:
  virtual ~KvCache() = default;
  // Makes positions [0, end) writable; false when there is no room.
  virtual bool Reserve(int end) = 0;
  // Attention will never again read positions before `pos`.
  virtual void ReleaseBefore(int pos) {}
  virtual float* K(int layer, int pos) = 0;  // [KV * hd]
  virtual float* V(int layer, int pos) = 0;  // [KV * hd]
  // The paged cache this is, or null (the GPU path reads block tables).
  virtual class PagedKvCache* AsPaged() { return nullptr; }
};

class RollingKvCache : public KvCache {
 public:
  RollingKvCache(int layers, int slots, int kv_width);
  bool Reserve(int end) override { return true; }
  float* K(int layer, int pos) override { return &k_[Index(layer, pos)]; }
  float* V(int layer, int pos) override { return &v_[Index(layer, pos)]; }
  int slots() const { return slots_; }

 private:
  size_t Index(int layer, int pos) const {
    return (static_cast<size_t>(layer) * slots_ + pos % slots_) * width_;
  }
  int slots_, width_;
  std::vector<float> k_, v_;  // [L, slots, KV * hd]
};

class KvBlockPool {
 public:
  // Allocation may fail (check allocated()): the size comes from flags. Without host storage
  // the pool only hands out block ids: the keys live on a device (device_storage()).
  KvBlockPool(int layers, int kv_width, int block_size, int blocks, bool host_storage = true);
  bool allocated() const { return !host_storage_ || (k_ != nullptr && v_ != nullptr); }
  int layers() const { return layers_; }
  int kv_width() const { return width_; }
  int block_size() const { return block_size_; }
  int total_blocks() const { return total_; }
  int free_blocks() const { return static_cast<int>(free_.size()); }
  int Allocate();        // -1 when none is free
  void Free(int block);
  float* K(int block, int layer, int offset) { return &k_[Index(block, layer, offset)]; }
  float* V(int block, int layer, int offset) { return &v_[Index(block, layer, offset)]; }
  // The device's keys and values for these blocks, attached by the GPU path on first use and
  // freed with the pool.
  std::shared_ptr<void>& device_storage() { return device_storage_; }

 private:
  size_t Index(int block, int layer, int offset) const {
    return ((static_cast<size_t>(block) * layers_ + layer) * block_size_ + offset) * width_;
  }
  int layers_, width_, block_size_, total_;
  bool host_storage_;
  std::vector<int> free_;
  // [blocks, L, B, KV * hd], left uninitialised so untouched blocks cost no memory.
  std::unique_ptr<float[]> k_, v_;
  std::shared_ptr<void> device_storage_;
};

class PagedKvCache : public KvCache {
 public:
  // `window` > 0: blocks entirely before the window are released.
  PagedKvCache(KvBlockPool* pool, int window) : pool_(pool), window_(window) {}
  // `count` caches over one pool of their own, without host storage, each with room for
  // `length` positions (the GPU path's caches outside the server's engine).
  static std::vector<std::unique_ptr<KvCache>> Group(int count, int layers, int kv_width,
                                                     int block_size, int length, int window);
  ~PagedKvCache() override;
  PagedKvCache* AsPaged() override { return this; }
  KvBlockPool* pool() const { return pool_; }
  const std::vector<int>& table() const { return table_; }  // -1: released
  bool Reserve(int end) override;
  void ReleaseBefore(int pos) override;
  float* K(int layer, int pos) override;
  float* V(int layer, int pos) override;
  // Blocks a sequence of `length` positions holds at most at once. With a window W and chunks of
  // at most W, a chunk's attention spans at most 2W - 1 positions.
  static int BlocksNeeded(int length, int block_size, int window);

 private:
  KvBlockPool* pool_;
  int window_;
  std::shared_ptr<KvBlockPool> own_pool_;  // Group's; released after the table is freed
  std::vector<int> table_;  // block of each B positions; -1 once released
};

}  // namespace moe
