#include "coordinator/kv_cache.h"

#include <algorithm>
#include <new>

#include "common/check.h"

namespace moe {

RollingKvCache::RollingKvCache(int layers, int slots, int kv_width)
    : slots_(slots),
      width_(kv_width),
      k_(static_cast<size_t>(layers) * slots * kv_width),
      v_(static_cast<size_t>(layers) * slots * kv_width) {}

KvBlockPool::KvBlockPool(int layers, int kv_width, int block_size, int blocks,
                         bool host_storage)
    : layers_(layers),
      width_(kv_width),
      block_size_(block_size),
      total_(blocks),
      host_storage_(host_storage) {
  const size_t n = static_cast<size_t>(blocks) * layers * block_size * kv_width;
  if (host_storage) {
    k_.reset(new (std::nothrow) float[n]);
    v_.reset(new (std::nothrow) float[n]);
  }
  if (!allocated()) {
    total_ = 0;
    return;
  }
  for (int b = blocks - 1; b >= 0; --b) free_.push_back(b);
}

int KvBlockPool::Allocate() {
  if (free_.empty()) return -1;
  const int b = free_.back();
  free_.pop_back();
  return b;
}

void KvBlockPool::Free(int block) { free_.push_back(block); }

std::vector<std::unique_ptr<KvCache>> PagedKvCache::Group(int count, int layers, int kv_width,
                                                          int block_size, int length,
                                                          int window) {
  const int each = BlocksNeeded(std::max(length, 1), block_size, window);
  auto pool = std::make_shared<KvBlockPool>(layers, kv_width, block_size, count * each,
                                            /*host_storage=*/false);
  std::vector<std::unique_ptr<KvCache>> caches;
  for (int i = 0; i < count; ++i) {
    auto cache = std::make_unique<PagedKvCache>(pool.get(), window);
    cache->own_pool_ = pool;
    caches.push_back(std::move(cache));
  }
  return caches;
}

PagedKvCache::~PagedKvCache() {
  for (int b : table_)
    if (b >= 0) pool_->Free(b);
}

int PagedKvCache::BlocksNeeded(int length, int block_size, int window) {
  const int all = (length + block_size - 1) / block_size;
  return window > 0 ? std::min(all, (2 * window - 1 + block_size - 1) / block_size + 1) : all;
}

bool PagedKvCache::Reserve(int end) {
  const int B = pool_->block_size();
  while (static_cast<int>(table_.size()) * B < end) {
    const int b = pool_->Allocate();
    if (b < 0) return false;
    table_.push_back(b);
  }
  return true;
}

void PagedKvCache::ReleaseBefore(int pos) {
  if (window_ <= 0) return;
  const int B = pool_->block_size();
  for (int i = 0; i < static_cast<int>(table_.size()) && (i + 1) * B <= pos; ++i) {
    if (table_[i] < 0) continue;
    pool_->Free(table_[i]);
    table_[i] = -1;
  }
}

float* PagedKvCache::K(int layer, int pos) {
  const int B = pool_->block_size();
  MOE_CHECK(pos / B < static_cast<int>(table_.size()) && table_[pos / B] >= 0,
            "KV position not reserved or already released");
  return pool_->K(table_[pos / B], layer, pos % B);
}

float* PagedKvCache::V(int layer, int pos) {
  const int B = pool_->block_size();
  MOE_CHECK(pos / B < static_cast<int>(table_.size()) && table_[pos / B] >= 0,
            "KV position not reserved or already released");
  return pool_->V(table_[pos / B], layer, pos % B);
}

}  // namespace moe
