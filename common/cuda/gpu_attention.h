// Attention on the device over the paged KV cache (coordinator/kv_cache.h's block layout, in
// device memory). Index legend: T = step rows, H = query heads, KV = kv heads, hd = head dim,
// L = layers, B = block size.
//
// A step's rows are described once, on the host, then uploaded: each row's position and where
// its sequence's block table starts in `tables` (every sequence's table laid end to end).
// One kernel serves decode and prefill: a tile is a run of consecutive rows of one sequence
// (one row for a decode token, up to kTileRows for a prefill chunk), and a thread block takes
// one (tile, head). It streams the keys its rows can see through shared memory, kKeyTile at a
// time, with an online softmax, so a prefill tile reads each key once for all of its rows.
// Decode rows with long contexts split their keys over several thread blocks (DecodeSplit).
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace moe::gpu {

constexpr int kTileRows = 16;
constexpr int kMaxHeadDim = 128;
constexpr int kKeyTile = 32;  // keys staged in shared memory at a time: one per lane

struct PagedKv {
  float* k = nullptr;  // [blocks, L, B, KV * hd]
  float* v = nullptr;  // [blocks, L, B, KV * hd]
  int layers = 0, block_size = 0, kv_heads = 0, head_dim = 0;
};

struct StepRows {
  const int32_t* pos = nullptr;        // [T] each row's position
  const int32_t* table_at = nullptr;   // [T] where its sequence's block table starts in tables
  const int32_t* tables = nullptr;     // block ids, every sequence's table end to end
};

// Writes the keys and values k, v [T, KV * hd] of the tiles' rows at their positions in
// `layer` (tiles as for PagedAttention).
Status KvWrite(const PagedKv& kv, int layer, const StepRows& rows, const float* k,
               const float* v, const int32_t* tile_row0, const int32_t* tile_rows, int tiles);

// Decode rows' keys cut into splits run by thread blocks of their own (split-K): at batch 1 a
// thread block per head alone leaves most of the GPU idle, and the time grows with the
// context. Rows with few keys, or enough (row, head) pairs to fill the GPU, are not split.
// Still one kernel: each split writes its softmax partial, and the last of a pair's splits to
// finish merges them all, in split order.
struct DecodeSplit {
  int splits = 1;               // 1: no split
  int keys = 0;                 // per split, a whole number of key tiles
  float* workspace = nullptr;   // device, DecodeWorkspaceFloats of it, when splits > 1
  int* arrivals = nullptr;      // device, kSplitBlocks ints: zero before a launch, zero after
};
constexpr int kMinSplitKeys = 128, kMaxSplits = 64, kSplitBlocks = 1024;
// The split for `pairs` (decode row, head) pairs whose rows see at most `max_keys` keys each:
// about max_keys / min_keys splits, no more than kMaxSplits or than kSplitBlocks thread blocks
// in all, each of ceil(max_keys / splits) keys rounded up to a key tile. A split step has
// fewer than kSplitBlocks pairs.
inline DecodeSplit SplitDecode(int max_keys, int pairs, int min_keys = kMinSplitKeys) {
  DecodeSplit s;
  int cap = pairs > 0 ? kSplitBlocks / pairs : 1;
  cap = cap < 1 ? 1 : cap < kMaxSplits ? cap : kMaxSplits;
  const int wanted = (max_keys + min_keys - 1) / min_keys;
  s.splits = wanted < 1 ? 1 : wanted > cap ? cap : wanted;
  const int per = (max_keys + s.splits - 1) / s.splits;
  s.keys = (per + kKeyTile - 1) / kKeyTile * kKeyTile;
  if (s.keys > 0) s.splits = (max_keys + s.keys - 1) / s.keys;
  if (s.splits < 1) s.splits = 1;
  return s;
}
// Floats of workspace for `tiles` decode tiles: [tiles, heads, splits, hd + 2].
inline int64_t DecodeWorkspaceFloats(const DecodeSplit& s, int tiles, int heads, int hd) {
  return s.splits > 1 ? int64_t{tiles} * heads * s.splits * (hd + 2) : 0;
}

// out [T, H * hd] = softmax(q k^T / sqrt(hd)) v per row and head over the keys at positions
// max(0, p - window + 1) .. p (window 0: all), read from the cache (written first).
// Tiles: `tile_row0` [tiles] and `tile_rows` [tiles] (1 .. kTileRows each); `multi_row` says
// whether any tile has more than one row (it picks the thread block size); else every tile is
// one decode row, and `split` (SplitDecode) says how its keys are cut.
Status PagedAttention(const PagedKv& kv, int layer, const StepRows& rows, const float* q,
                      int heads, int window, const int32_t* tile_row0, const int32_t* tile_rows,
                      int tiles, bool multi_row, const DecodeSplit& split, float* out);

// What PagedAttention refuses before it launches anything.
inline Status CheckPagedAttention(const PagedKv& kv, int heads, int tiles, bool multi_row,
                                  const DecodeSplit& split) {
  if (kv.head_dim > kMaxHeadDim || kv.head_dim % 2 != 0)
    return InvalidArgument("the GPU attention kernel takes an even head_dim of at most " +
                           std::to_string(kMaxHeadDim) + ", the model has " +
                           std::to_string(kv.head_dim));
  if (heads % kv.kv_heads != 0) return InvalidArgument("heads must be a multiple of kv heads");
  if (tiles > 0 && !multi_row && split.splits > 1) {
    if (split.workspace == nullptr || split.arrivals == nullptr)
      return InvalidArgument("split decode attention needs its workspace and arrival counts");
    if (split.keys <= 0 || split.keys % kKeyTile != 0)
      return InvalidArgument("split decode attention takes a positive multiple of " +
                             std::to_string(kKeyTile) + " keys a split (SplitDecode), got " +
                             std::to_string(split.keys));
    if (int64_t{tiles} * heads >= kSplitBlocks)
      return InvalidArgument("split decode attention over " +
                             std::to_string(int64_t{tiles} * heads) +
                             " (row, head) pairs: it counts arrivals for fewer than " +
                             std::to_string(kSplitBlocks) + " (SplitDecode)");
  }
  return Status::Ok();
}

}  // namespace moe::gpu
