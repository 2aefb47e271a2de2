// The pieces that let ranks share a host: core shares (common/cpu_affinity.h), the doorbell
// that wakes a waiting rank (common/doorbell.h) and the shared-memory inboxes
// (common/shm_inbox.h).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "common/cpu_affinity.h"
#include "common/doorbell.h"
#include "common/shm_inbox.h"

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

std::string InboxName(int n) {
  return "/moe-test-" + std::to_string(getpid()) + "-" + std::to_string(n);
}

// Unlinks an inbox's name however the test ends.
struct Unlinker {
  ShmInbox* inbox;
  ~Unlinker() {
    if (inbox != nullptr) inbox->Unlink();
  }
};

TEST(CpuShare, OrderingByCoreKeepsEveryCore) {
  std::vector<int> all = AllowedCpus();
  std::vector<int> ordered = OrderedByCore(all);
  std::sort(ordered.begin(), ordered.end());
  EXPECT_EQ(ordered, all);
}

TEST(ShmInbox, CarriesEachExchangesMessageInAlternateSlots) {
  const std::string name = InboxName(0);
  auto mine = ShmInbox::Create(name, 2, 64);
  ASSERT_NE(mine, nullptr);
  Unlinker unlink{mine.get()};
  auto peer = ShmInbox::Open(name, 2, 64);  // how a sender on this host sees it
  ASSERT_NE(peer, nullptr);
  mine->Unlink();
  EXPECT_EQ(ShmInbox::Open(name, 2, 64), nullptr);  // gone by name, still mapped

  int64_t bytes = 0;
  EXPECT_FALSE(mine->Peek(0, 1, &bytes));
  const std::vector<uint8_t> first = {1, 2, 3}, second(64, 7);
  peer->Put(1, 1, first.data(), 3);
  EXPECT_FALSE(mine->Peek(0, 1, &bytes));  // the other sender's slot
  ASSERT_TRUE(mine->Peek(1, 1, &bytes));
  ASSERT_EQ(bytes, 3);
  EXPECT_EQ(std::vector<uint8_t>(mine->Data(1, 1), mine->Data(1, 1) + 3), first);
  // Exchange 2 writes the other slot: exchange 1's bytes stay until exchange 3.
  peer->Put(1, 2, second.data(), 64);
  EXPECT_FALSE(mine->Peek(1, 3, &bytes));
  ASSERT_TRUE(mine->Peek(1, 2, &bytes));
  EXPECT_EQ(std::vector<uint8_t>(mine->Data(1, 2), mine->Data(1, 2) + 64), second);
  ASSERT_TRUE(mine->Peek(1, 1, &bytes));
  EXPECT_EQ(std::vector<uint8_t>(mine->Data(1, 1), mine->Data(1, 1) + 3), first);
  peer->Put(1, 3, nullptr, ShmInbox::kViaMpi);
  ASSERT_TRUE(mine->Peek(1, 3, &bytes));
  EXPECT_EQ(bytes, ShmInbox::kViaMpi);
  EXPECT_FALSE(mine->Peek(1, 1, &bytes));  // overwritten
}

TEST(ShmInbox, OpensOnlyAnInboxOfTheSameShape) {
  const std::string name = InboxName(1);
  auto mine = ShmInbox::Create(name, 1, 128);
  ASSERT_NE(mine, nullptr);
  Unlinker unlink{mine.get()};
  EXPECT_EQ(ShmInbox::Create(name, 1, 128), nullptr);  // the name is taken
  EXPECT_EQ(ShmInbox::Open(name, 2, 128), nullptr);
  EXPECT_EQ(ShmInbox::Open(name, 1, 64), nullptr);
  EXPECT_EQ(ShmInbox::Open(InboxName(2), 1, 128), nullptr);  // not there
  EXPECT_NE(ShmInbox::Open(name, 1, 128), nullptr);
}

TEST(ShmInbox, SlotsOfAnySizeStayAligned) {
  const std::string name = InboxName(3);
  auto mine = ShmInbox::Create(name, 2, 100);  // not a whole number of cache lines
  ASSERT_NE(mine, nullptr);
  Unlinker unlink{mine.get()};
  const std::vector<uint8_t> bytes(100, 9);
  for (uint64_t seq = 1; seq <= 4; ++seq) {
    for (int s = 0; s < 2; ++s) {
      mine->Put(s, seq, bytes.data(), 100);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(mine->Data(s, seq)) % 64, 0u);
      int64_t n = 0;
      ASSERT_TRUE(mine->Peek(s, seq, &n));
      EXPECT_EQ(n, 100);
    }
  }
}

}  // namespace
}  // namespace moe
