// coordinator/micro_batches.h: the cut of a step into two micro-batches, and the order of a
// step's work, which every rank's side of the exchanges must keep.
#include "coordinator/micro_batches.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace moe {
namespace {

TEST(MicroBatches, CutsTheStepInHalvesAndTheChunkAcrossTheMiddle) {
  KvCache* a = reinterpret_cast<KvCache*>(0x10);  // only compared, never used
  KvCache* b = reinterpret_cast<KvCache*>(0x20);
  // Sequence a: 3 tokens from position 4; b: 4 tokens from 0. T = 7, halves 3 and 4.
  std::vector<MicroBatchRows> parts = SplitMicroBatches({{a, 4, 3}, {b, 0, 4}}, 7, 2);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].row0, 0);
  EXPECT_EQ(parts[0].rows, 3);
  ASSERT_EQ(parts[0].chunks.size(), 1u);
  EXPECT_EQ(parts[0].chunks[0].cache, a);
  EXPECT_EQ(parts[1].row0, 3);
  EXPECT_EQ(parts[1].rows, 4);
  ASSERT_EQ(parts[1].chunks.size(), 1u);
  EXPECT_EQ(parts[1].chunks[0].cache, b);
  // One chunk of 5 from position 10: cut 2 | 3, the second part starting at position 12.
  parts = SplitMicroBatches({{a, 10, 5}}, 5, 2);
  ASSERT_EQ(parts.size(), 2u);
  ASSERT_EQ(parts[0].chunks.size(), 1u);
  ASSERT_EQ(parts[1].chunks.size(), 1u);
  EXPECT_EQ(parts[0].chunks[0].start_pos, 10);
  EXPECT_EQ(parts[0].chunks[0].length, 2);
  EXPECT_EQ(parts[1].chunks[0].start_pos, 12);
  EXPECT_EQ(parts[1].chunks[0].length, 3);
  // One row, or one micro-batch asked for: the step as it is.
  EXPECT_EQ(SplitMicroBatches({{a, 7, 1}}, 1, 2).size(), 1u);
  parts = SplitMicroBatches({{a, 0, 3}, {b, 0, 2}}, 5, 1);
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].rows, 5);
  EXPECT_EQ(parts[0].chunks.size(), 2u);
}

// The calls RunMicroBatches makes, as "a1.0" (attend, layer 1, micro-batch 0), "d", "c".
std::string Schedule(int layers, int parts, const std::string& fail_at = "") {
  std::string log;
  auto step = [&](char what) {
    return [&log, &fail_at, what](int l, int i) {
      const std::string call = what + std::to_string(l) + "." + std::to_string(i);
      log += call + " ";
      return call == fail_at ? Internal(call) : Status::Ok();
    };
  };
  const Status s = RunMicroBatches(layers, parts, step('a'), step('d'), step('c'));
  if (!s.ok()) log += "! " + s.message();
  return log;
}

TEST(MicroBatches, RunsEachMicroBatchsAttentionWhileTheOtherIsWithTheWorkers) {
  // One micro-batch: a layer's attention needs the previous layer's answer.
  EXPECT_EQ(Schedule(2, 1), "a0.0 d0.0 c0.0 a1.0 d1.0 c1.0 ");
  // Two: the exchanges in the order of one micro-batch (dispatch, combine, per micro-batch),
  // the other micro-batch's attention between each dispatch and its combine.
  EXPECT_EQ(Schedule(2, 2),
            "a0.0 d0.0 a0.1 c0.0 d0.1 a1.0 c0.1 d1.0 a1.1 c1.0 d1.1 c1.1 ");
  // A failure ends the step there.
  EXPECT_EQ(Schedule(2, 2, "c0.1"), "a0.0 d0.0 a0.1 c0.0 d0.1 a1.0 c0.1 ! c0.1");
}

}  // namespace
}  // namespace moe
