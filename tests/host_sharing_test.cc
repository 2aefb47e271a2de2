// The pieces that let ranks share a host: core shares (common/cpu_affinity.h) and the doorbell
// that wakes a waiting rank (common/doorbell.h).
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "common/cpu_affinity.h"
#include "common/doorbell.h"

namespace moe {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::microseconds;

TEST(CpuShare, SplitsCoresIntoContiguousNearEqualShares) {
  const std::vector<int> two = {0, 1};
  EXPECT_EQ(CpuShare(two, 0, 2), std::vector<int>({0}));
  EXPECT_EQ(CpuShare(two, 1, 2), std::vector<int>({1}));
  EXPECT_EQ(CpuShare(two, 0, 1), two);
  std::vector<int> sixteen;
  for (int c = 0; c < 16; ++c) sixteen.push_back(c + 8);  // cores 8..23
  EXPECT_EQ(CpuShare(sixteen, 0, 3).size(), 5u);
  EXPECT_EQ(CpuShare(sixteen, 1, 3).size(), 5u);
  EXPECT_EQ(CpuShare(sixteen, 2, 3).size(), 6u);
  EXPECT_EQ(CpuShare(sixteen, 2, 3).front(), 18);
  EXPECT_EQ(CpuShare(sixteen, 2, 3).back(), 23);
}

TEST(CpuShare, MoreSharesThanCoresShareSingleCores) {
  const std::vector<int> two = {4, 6};
  EXPECT_EQ(CpuShare(two, 0, 3), std::vector<int>({4}));
  EXPECT_EQ(CpuShare(two, 1, 3), std::vector<int>({4}));
  EXPECT_EQ(CpuShare(two, 2, 3), std::vector<int>({6}));
  EXPECT_TRUE(CpuShare(two, 3, 3).empty());
  EXPECT_TRUE(CpuShare({}, 0, 1).empty());
}

TEST(CpuShare, ListsCoresAsRanges) {
  EXPECT_EQ(CpuListText({0, 1, 2, 3, 8}), "0-3,8");
  EXPECT_EQ(CpuListText({5}), "5");
  EXPECT_EQ(CpuListText({1, 3, 4}), "1,3-4");
}

TEST(CpuShare, PinningNarrowsTheAffinityOfThisThreadAndItsChildren) {
  std::thread([] {
    const std::vector<int> all = AllowedCpus();
    ASSERT_FALSE(all.empty());
    ASSERT_EQ(PinCallingThread({all.back()}), "");
    EXPECT_EQ(AllowedCpus(), std::vector<int>({all.back()}));
    std::thread([&] { EXPECT_EQ(AllowedCpus(), std::vector<int>({all.back()})); }).join();
  }).join();
  EXPECT_NE(PinCallingThread({}), "");
}

// A job token no other test run uses.
uint64_t TestJob() { return 0x7e57000000000000ull ^ static_cast<uint64_t>(getpid()); }

TEST(Doorbell, ARingEndsAWaitAtOnceAndIsClearedByIt) {
  Doorbell rank0(TestJob(), 0), rank1(TestJob(), 1);
  ASSERT_TRUE(rank0.open());
  ASSERT_TRUE(rank1.open());
  EXPECT_TRUE(rank0.Ring(1));
  EXPECT_TRUE(rank0.Ring(1));  // several rings wake one wait
  auto t0 = Clock::now();
  rank1.Wait(std::chrono::seconds(20));
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(10));
  // Cleared: the next wait sleeps its whole timeout.
  t0 = Clock::now();
  rank1.Wait(microseconds(20000));
  EXPECT_GE(Clock::now() - t0, microseconds(20000));
}

TEST(Doorbell, WakesAWaitFromAnotherThread) {
  Doorbell rank0(TestJob() + 1, 0), rank1(TestJob() + 1, 1);
  const auto t0 = Clock::now();
  std::thread ringer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    rank0.Ring(1);
  });
  rank1.Wait(std::chrono::seconds(20));
  ringer.join();
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(10));
}

TEST(Doorbell, ReachesOnlyItsOwnJobAndRanks) {
  Doorbell mine(TestJob() + 2, 0), other_job(TestJob() + 3, 1);
  EXPECT_FALSE(mine.Ring(1));  // rank 1 of this job has no doorbell
  EXPECT_FALSE(mine.Ring(7));
  const auto t0 = Clock::now();
  other_job.Wait(microseconds(20000));
  EXPECT_GE(Clock::now() - t0, microseconds(20000));
}

TEST(Doorbell, OneNameOnce) {
  Doorbell first(TestJob() + 4, 0), second(TestJob() + 4, 0);
  EXPECT_TRUE(first.open());
  EXPECT_FALSE(second.open());  // silent: rings nobody, and waits by sleeping
  EXPECT_FALSE(second.Ring(0));
  const auto t0 = Clock::now();
  second.Wait(microseconds(20000));
  EXPECT_GE(Clock::now() - t0, microseconds(20000));
}

}  // namespace
}  // namespace moe
