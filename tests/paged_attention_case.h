// One step of attention over paged KV caches, for the tests of the GPU kernels (on a device,
// tests/gpu_ops_test.cc, and on the host through tests/simt): sequences each with a past
// already in the cache, in blocks handed out from the top of the pool down (so tables are not
// in order), and some new rows; the CPU's answer (coordinator/attention.h) for every row.
// Index legend: T = the step's rows, H = heads, KV = kv heads, hd = head dim.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/cuda/gpu_attention.h"
#include "common/thread_pool.h"
#include "coordinator/attention.h"
#include "tests/test_util.h"

namespace moe::testing {

struct PagedAttentionCase {
  struct Sequence {
    int past = 0, rows = 0;  // positions 0 .. past - 1 cached; past .. past + rows - 1 new
  };
  static constexpr int H = 4, KV = 2, L = 2, layer = 1, B = 4;

  PagedAttentionCase(const std::vector<Sequence>& sequences, int window_, int head_dim = 32)
      : hd(head_dim), W(KV * head_dim), window(window_) {
    int blocks = 0;
    for (const Sequence& s : sequences) blocks += (s.past + s.rows + B - 1) / B;
    pool_blocks = blocks + 1;  // one never used
    k_cache.assign(static_cast<size_t>(pool_blocks) * L * B * W, 0.0f);
    v_cache.assign(k_cache.size(), 0.0f);
    int next_block = pool_blocks - 1;
    std::vector<int32_t> prefill_row0, prefill_rows;
    for (size_t si = 0; si < sequences.size(); ++si) {
      const Sequence& s = sequences[si];
      const int P = s.past + s.rows;
      std::vector<int32_t> table;
      for (int i = 0; i < (P + B - 1) / B; ++i) table.push_back(next_block--);
      const auto seq_q = Random(static_cast<size_t>(s.rows) * H * hd, 20 + si);
      const auto k = Random(static_cast<size_t>(P) * W, 30 + si);
      const auto v = Random(static_cast<size_t>(P) * W, 40 + si);
      RollingKvCache cache(1, P, W);
      for (int j = 0; j < s.past; ++j) {
        std::copy(&k[j * W], &k[(j + 1) * W], cache.K(0, j));
        std::copy(&v[j * W], &v[(j + 1) * W], cache.V(0, j));
        const size_t at = ((static_cast<size_t>(table[j / B]) * L + layer) * B + j % B) * W;
        std::copy(&k[j * W], &k[(j + 1) * W], &k_cache[at]);
        std::copy(&v[j * W], &v[(j + 1) * W], &v_cache[at]);
      }
      std::vector<float> out(static_cast<size_t>(s.rows) * H * hd);
      ThreadPool threads(1);
      AttendChunk({H, KV, hd, window}, seq_q.data(), &k[s.past * W], &v[s.past * W], s.rows,
                  s.past, cache, 0, out.data(), threads);
      want.insert(want.end(), out.begin(), out.end());
      q.insert(q.end(), seq_q.begin(), seq_q.end());
      k_step.insert(k_step.end(), k.begin() + s.past * W, k.end());
      v_step.insert(v_step.end(), v.begin() + s.past * W, v.end());
      const int row = static_cast<int>(pos.size());
      if (s.rows == 1) {
        tile_row0.push_back(row);
        tile_rows.push_back(1);
        ++decode_tiles;
        max_decode_keys = std::max(max_decode_keys, window > 0 ? std::min(P, window) : P);
      } else {
        for (int i = 0; i < s.rows; i += gpu::kTileRows) {
          prefill_row0.push_back(row + i);
          prefill_rows.push_back(std::min(gpu::kTileRows, s.rows - i));
        }
      }
      for (int i = 0; i < s.rows; ++i) {
        pos.push_back(s.past + i);
        table_at.push_back(static_cast<int32_t>(tables.size()));
      }
      tables.insert(tables.end(), table.begin(), table.end());
    }
    tile_row0.insert(tile_row0.end(), prefill_row0.begin(), prefill_row0.end());
    tile_rows.insert(tile_rows.end(), prefill_rows.begin(), prefill_rows.end());
  }
  int tiles() const { return static_cast<int>(tile_row0.size()); }

  int hd, W;  // head dim; kv width KV * hd
  int window = 0, pool_blocks = 0;
  std::vector<float> k_cache, v_cache;         // [pool_blocks, L, B, W], the pasts written
  std::vector<float> q, k_step, v_step;        // [T, H*hd], [T, W], [T, W]
  std::vector<int32_t> pos, table_at, tables;  // [T], [T], every table end to end
  std::vector<int32_t> tile_row0, tile_rows;   // the decode tiles first, then the prefill ones
  int decode_tiles = 0, max_decode_keys = 0;
  std::vector<float> want;                     // [T, H*hd]
};

}  // namespace moe::testing
