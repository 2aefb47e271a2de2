// Causal grouped-query attention of one sequence's chunk against its cache.
// Index legend: C = chunk tokens, H = query heads, KV = key/value heads, hd = head dim.
//
// A query at position p sees keys max(0, p - W + 1) .. p (W = sliding window, or all).
// Keys before the chunk come from the cache, keys inside it from the chunk itself; the chunk's
// keys and values are written to the cache afterwards, so a rolling buffer of W slots never
// loses a key a query in the chunk still needs. Every query visits its keys in position order,
// so its result does not depend on how the prompt was chunked.
#pragma once

#include "common/thread_pool.h"
#include "coordinator/kv_cache.h"

namespace moe {

struct AttentionShape {
  int heads = 0;     // H
  int kv_heads = 0;  // KV
  int head_dim = 0;  // hd
  int window = 0;    // W, 0 = unbounded
};

// q [C, H*hd] and k [C, KV*hd] already rotated; v [C, KV*hd]; positions p0 .. p0 + C - 1.
// out [C, H*hd]. Appends the chunk's k and v to `cache` at `layer` (reserved by the caller).
// A rolling cache needs C <= its slots.
void AttendChunk(const AttentionShape& shape, const float* q, const float* k, const float* v,
                 int C, int p0, KvCache& cache, int layer, float* out, ThreadPool& pool);

}  // namespace moe
