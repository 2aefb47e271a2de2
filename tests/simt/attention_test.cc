// The GPU attention kernels (common/cuda/gpu_attention_kernels.cuh) run on the host by
// tests/simt/simt_host.h, against the CPU's attention: prefill tiles, decode rows with and
// without split keys (splits of different lengths, some empty for the shorter rows), with and
// without a window. Runs everywhere; the `gpu` tests run the same kernels on a device.
#include "tests/simt/simt_host.h"
// (the stand-ins first)
#include "common/cuda/gpu_attention_kernels.cuh"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "tests/paged_attention_case.h"

namespace moe {
namespace {

using testing::PagedAttentionCase;

// The step's keys into the cache, then attention for the decode tiles (split as `split` says)
// and the prefill tiles, as coordinator/gpu_forward.cc queues them. The split workspace starts
// as NaN, so a merge that reads a partial no block wrote shows; the arrival counts must be
// left zero.
std::vector<float> RunOnHost(PagedAttentionCase& c, gpu::DecodeSplit split) {
  std::vector<float> k = c.k_cache, v = c.v_cache, out(c.want.size(), -1.0f);
  std::vector<float> workspace(gpu::DecodeWorkspaceFloats(split, c.decode_tiles, c.H, c.hd),
                               std::nanf(""));
  std::vector<int> arrivals(gpu::kSplitBlocks, 0);
  split.workspace = workspace.data();
  split.arrivals = arrivals.data();
  const gpu::PagedKv kv{k.data(), v.data(), c.L, c.B, c.KV, c.hd};
  const gpu::StepRows rows{c.pos.data(), c.table_at.data(), c.tables.data()};
  auto launch = [](dim3 grid, dim3 block, auto kernel, auto... args) {
    simt::Launch(grid, block, kernel, args...);
  };
  launch(dim3(c.tiles()), dim3(128), gpu::kernels::KvWriteKernel, kv, c.layer, rows,
         static_cast<const float*>(c.k_step.data()), static_cast<const float*>(c.v_step.data()),
         static_cast<const int32_t*>(c.tile_row0.data()),
         static_cast<const int32_t*>(c.tile_rows.data()));
  const int prefill = c.tiles() - c.decode_tiles;
  EXPECT_TRUE(gpu::kernels::EnqueuePagedAttention(launch, kv, c.layer, rows, c.q.data(), c.H,
                                                  c.window, c.tile_row0.data(),
                                                  c.tile_rows.data(), c.decode_tiles, false,
                                                  split, out.data())
                  .ok());
  EXPECT_TRUE(gpu::kernels::EnqueuePagedAttention(
                  launch, kv, c.layer, rows, c.q.data(), c.H, c.window,
                  c.tile_row0.data() + c.decode_tiles, c.tile_rows.data() + c.decode_tiles,
                  prefill, true, gpu::DecodeSplit{}, out.data())
                  .ok());
  EXPECT_EQ(std::count(arrivals.begin(), arrivals.end(), 0), gpu::kSplitBlocks);
  return out;
}

TEST(SimtAttention, KernelsMatchCpuWithAndWithoutSplitKeys) {
  struct Shape {
    int head_dim, window;
  };
  for (const Shape shape : {Shape{32, 0}, Shape{32, 37}, Shape{128, 0}}) {
    // Decode rows seeing 6, 41 and 150 keys, and prefill chunks of 21 rows after 9 and after
    // 40 (their keys span several key tiles).
    PagedAttentionCase c({{5, 1}, {9, 21}, {40, 1}, {40, 21}, {149, 1}}, shape.window,
                         shape.head_dim);
    const int keys = c.max_decode_keys, pairs = c.decode_tiles * c.H;
    for (const gpu::DecodeSplit split : {gpu::DecodeSplit{}, gpu::SplitDecode(keys, pairs),
                                         gpu::SplitDecode(keys, pairs, 32)}) {
      const std::vector<float> got = RunOnHost(c, split);
      EXPECT_LE(testing::RelativeMaxError(got.data(), c.want.data(), c.want.size()), 1e-5)
          << "hd " << shape.head_dim << ", window " << shape.window << ", " << split.splits
          << " splits of " << split.keys;
      // Blocks in another order: another split of each pair finishes last and merges, in the
      // same order, so to the same bits.
      EXPECT_EQ(RunOnHost(c, split), got) << split.splits << " splits";
    }
  }
}

TEST(SimtAttention, SplitDecodeCoversEveryKeyOnce) {
  for (int keys : {1, 31, 32, 128, 129, 2048, 4096, 100000}) {
    for (int pairs : {1, 32, 600, 1023, 2048}) {
      for (int min_keys : {32, gpu::kMinSplitKeys}) {
        const gpu::DecodeSplit s = gpu::SplitDecode(keys, pairs, min_keys);
        EXPECT_GE(s.splits, 1);
        EXPECT_LE(s.splits, gpu::kMaxSplits);
        EXPECT_LE(int64_t{s.splits} * pairs, std::max(gpu::kSplitBlocks, pairs));
        if (s.splits > 1) {
          EXPECT_LT(pairs, gpu::kSplitBlocks);  // the arrival counts
        }
        EXPECT_EQ(s.keys % gpu::kKeyTile, 0);
        EXPECT_GE(int64_t{s.splits} * s.keys, keys) << keys;     // every key in a split
        EXPECT_LT(int64_t{s.splits - 1} * s.keys, keys) << keys;  // no split wholly past them
        if (keys <= min_keys || pairs >= gpu::kSplitBlocks) {
          EXPECT_EQ(s.splits, 1) << keys;
        }
      }
    }
  }
  EXPECT_EQ(gpu::SplitDecode(2048, 32).splits, 16);  // batch 1, 32 heads: 512 blocks
  EXPECT_EQ(gpu::SplitDecode(0, 32).splits, 1);
}

// A split made by hand that would drop keys or divide by nothing is refused before a launch.
TEST(SimtAttention, MalformedSplitIsRefused) {
  const gpu::PagedKv kv{nullptr, nullptr, 1, 16, 2, 32};
  float workspace = 0;
  int arrivals = 0;
  for (const int keys : {0, -32, 33}) {
    gpu::DecodeSplit split = gpu::SplitDecode(256, 8, 32);
    ASSERT_GT(split.splits, 1);
    split.keys = keys;
    split.workspace = &workspace;
    split.arrivals = &arrivals;
    const Status s = gpu::CheckPagedAttention(kv, 4, 2, false, split);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << keys;
    EXPECT_NE(s.message().find("keys a split"), std::string::npos) << s.message();
  }
}

}  // namespace
}  // namespace moe
