// The expert exchange as the GPU path runs it, checked on the host.
// - SumPlan: the fixed order of the combine's sums (the GPU kernel follows the same plan).
// - A linked dispatch, whose hidden rows and answers travel apart from the messages (over NCCL
//   between GPUs), answers bit for bit as the inline dispatch does, for whole, replicated and
//   sliced experts. Here the "link" is host memory and the "GPU" computes with the CPU's expert
//   kernels; everything else (messages, counts, row order, plans) is the code the GPUs run.
// - The choice between NCCL and host-staged exchange from every rank's device.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <numeric>

#include "common/checkpoint.h"
#include "common/mapped_file.h"
#include "common/sum_plan.h"
#include "common/wire_format.h"
#include "coordinator/device_choice.h"
#include "coordinator/expert_parallel.h"
#include "tests/test_util.h"
#include "worker/expert_ffn.h"

namespace moe {
namespace {

TEST(SumPlan, AddsInPlanOrderAndWeightsEachTermsSum) {
  const int D = 2;
  // Vectors whose sums depend on the order: 1e8 + 1 - 1e8 is 0 in f32, 1e8 - 1e8 + 1 is 1.
  const std::vector<float> v = {1e8f, 3.0f, 1.0f, 0.5f, -1e8f, -3.0f};
  SumPlan plan;
  plan.AddOutput();  // 0: one term of three sources, weighted after the sum
  plan.AddTerm(0.5f);
  plan.AddSource(0);
  plan.AddSource(2);
  plan.AddSource(4);
  plan.AddOutput();  // 1: two terms of one source, in the other order
  plan.AddTerm(1.0f);
  plan.AddSource(0);
  plan.AddTerm(1.0f);
  plan.AddSource(4);
  plan.AddTerm(2.0f);
  plan.AddSource(2);
  plan.AddOutput();  // 2: no terms
  std::vector<float> out(3 * D, -7.0f);
  ApplySumPlan(plan, v.data(), D, out.data());
  EXPECT_EQ(plan.outputs(), 3);
  EXPECT_EQ(out[0], 0.5f * ((1e8f + 1.0f) + -1e8f));
  EXPECT_EQ(out[0], 0.0f);
  EXPECT_EQ(out[1], 0.5f * ((3.0f + 0.5f) + -3.0f));
  EXPECT_EQ(out[2], 2.0f);  // (1e8 - 1e8) + 2 * 1
  EXPECT_EQ(out[3], 1.0f);
  EXPECT_EQ(out[4], 0.0f);
  EXPECT_EQ(out[5], 0.0f);
  plan.Clear();
  EXPECT_EQ(plan.outputs(), 0);
  EXPECT_TRUE(plan.weight.empty() && plan.source.empty());
}

// Host memory standing in for the GPU link: rank 0 puts each worker's rows here and takes the
// answers back.
struct FakeLink {
  std::map<int, std::vector<float>> rows;     // [rank] -> [rows, D]
  std::map<int, std::vector<float>> answers;  // [rank] -> [vectors, D]
};

// A "GPU" that computes with the CPU's expert kernels, taking rows from and leaving answers on
// the fake link, laid out as worker/gpu_experts.cc lays them out.
class FakeLinkedDevice : public ExpertDevice {
 public:
  FakeLinkedDevice(const ExpertStore* store, int rank, int D, FakeLink* link, ThreadPool* pool)
      : store_(store), rank_(rank), D_(D), link_(link), pool_(pool) {}
  bool linked() const override { return true; }
  Status Run(const DeviceJob& job) override {
    EXPECT_EQ(job.x, nullptr);
    EXPECT_EQ(job.out, nullptr);
    const std::vector<float>& rows = link_->rows.at(rank_);
    EXPECT_EQ(static_cast<int64_t>(rows.size()), int64_t{job.rows} * D_);
    const std::vector<ExpertSlice>& slices = store_->layer(job.layer);
    // Each task's rows, then its outputs: [n, D] whole (blocks summed), else [blocks, n, D].
    std::vector<float> out;
    int64_t row = 0;
    for (const DeviceTask& t : job.tasks) {
      const ExpertSlice& s = slices[t.slice];
      const int blocks = s.block_end - s.block_begin;
      if (t.n == 0) continue;
      std::vector<float> x(int64_t{t.n} * D_), partials(int64_t{blocks} * t.n * D_);
      for (int i = 0; i < t.n; ++i)
        std::memcpy(&x[int64_t{i} * D_], &rows[int64_t{job.row_index[row + i]} * D_], D_ * 4);
      ExpertBlockPartials({{&s, x.data(), t.n, partials.data()}}, store_->block_size(), scratch_,
                          *pool_);
      if (blocks == store_->blocks()) {
        std::vector<float> sum(int64_t{t.n} * D_);
        SumBlocks(partials.data(), blocks, int64_t{t.n} * D_, sum.data());
        out.insert(out.end(), sum.begin(), sum.end());
      } else {
        out.insert(out.end(), partials.begin(), partials.end());
      }
      row += t.n;
    }
    std::vector<float>& answers = link_->answers[rank_];
    answers.assign(int64_t{job.vectors} * D_, 0.0f);
    ApplySumPlan(*job.plan, out.data(), D_, answers.data());
    return Status::Ok();
  }

 private:
  const ExpertStore* store_;
  int rank_, D_;
  FakeLink* link_;
  ThreadPool* pool_;
  ExpertScratch scratch_;
};

// Rank 0's side of a star of ranks in one process: a dispatch is kept, and each worker answers
// it (ExpertWorker::Process) when rank 0 waits for the combine.
class LoopbackStar : public Transport {
 public:
  explicit LoopbackStar(std::vector<ExpertWorker*> workers) : workers_(std::move(workers)) {}
  int rank() const override { return 0; }
  int size() const override { return static_cast<int>(workers_.size()); }
  std::string host(int) const override { return "localhost"; }
  Status Exchange(const ByteRuns& send, ByteRuns* recv, const ExchangeLabel& label,
                  double) override {
    recv->data.clear();
    recv->counts.assign(size(), 0);
    if (std::string(label.phase) == "dispatch") {
      dispatch_ = send;
      return Status::Ok();
    }
    for (int r = 1; r < size(); ++r) {
      if (dispatch_.counts[r] == 0) continue;
      wire::DispatchHeader h;
      std::memcpy(&h, dispatch_.at(r), sizeof(h));
      const size_t before = recv->data.size();
      MOE_RETURN_IF_ERROR(workers_[r]->Process(h, dispatch_.at(r) + sizeof(h),
                                               dispatch_.counts[r] - sizeof(h), &recv->data));
      recv->counts[r] = static_cast<int64_t>(recv->data.size() - before);
    }
    return Status::Ok();
  }
  Status CheckSameEverywhere(uint64_t, const std::string&) override { return Status::Ok(); }
  Status AgreeOnStatus(const Status& mine) override { return mine; }
  [[noreturn]] void Abort(int code) override { std::exit(code); }

 private:
  std::vector<ExpertWorker*> workers_;
  ByteRuns dispatch_;
};

class LinkedExchange : public ::testing::TestWithParam<int> {};

TEST_P(LinkedExchange, AnswersBitForBitAsTheInlineExchange) {
  const int W = GetParam();
  const std::string dir = testing::ModelDir("mixtral-bf16-sharded");
  auto text = ReadFileToString(dir + "/config.json");
  ASSERT_TRUE(text.ok());
  auto parsed = ParseModelConfig(*text, "config.json");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  const ModelConfig c = *parsed;
  auto placement = ComputePlacement(c, W);
  ASSERT_TRUE(placement.ok()) << placement.status().ToString();
  const int D = c.hidden, K = c.experts_per_token, E = c.num_experts, T = 23;
  bool sliced = false;
  for (int e = 0; e < E; ++e) sliced = sliced || !placement->whole(e);
  EXPECT_EQ(sliced, W > E) << "the placement this case is meant to cover";
  ThreadPool pool(1);
  FakeLink link;
  std::vector<std::unique_ptr<Checkpoint>> ckpts;  // the stores' weights are mapped from them
  std::vector<std::unique_ptr<ExpertStore>> stores;
  std::vector<std::unique_ptr<FakeLinkedDevice>> devices;
  std::vector<std::unique_ptr<ExpertWorker>> inline_workers, linked_workers;
  std::vector<ExpertWorker*> inline_ranks{nullptr}, linked_ranks{nullptr};
  for (int r = 1; r <= W; ++r) {
    auto ckpt = Checkpoint::Open(dir);
    ASSERT_TRUE(ckpt.ok());
    ckpts.push_back(std::move(*ckpt));
    auto store = ExpertStore::Load(c, *ckpts.back(), placement->by_rank[r]);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    stores.push_back(std::make_unique<ExpertStore>(std::move(*store)));
    devices.push_back(std::make_unique<FakeLinkedDevice>(stores.back().get(), r, D, &link, &pool));
    inline_workers.push_back(std::make_unique<ExpertWorker>(stores.back().get(), K, D, &pool));
    linked_workers.push_back(
        std::make_unique<ExpertWorker>(stores.back().get(), K, D, &pool, devices.back().get()));
    inline_ranks.push_back(inline_workers.back().get());
    linked_ranks.push_back(linked_workers.back().get());
  }
  LoopbackStar inline_star(inline_ranks), linked_star(linked_ranks);
  ExpertParallel inline_ep(c, &*placement, &inline_star, nullptr, 10, nullptr);
  ExpertParallel linked_ep(c, &*placement, &linked_star, nullptr, 10, nullptr);

  // Routes: K distinct experts per token in id order, weights summing to 1.
  const std::vector<float> h = testing::Random(int64_t{T} * D, 7);
  std::mt19937 rng(11);
  Routes routes;
  routes.k = K;
  for (int t = 0; t < T; ++t) {
    std::vector<int> ids(E);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    std::sort(ids.begin(), ids.begin() + K);
    const float w = std::uniform_real_distribution<float>(0.1f, 0.9f)(rng);
    for (int j = 0; j < K; ++j) {
      routes.expert.push_back(ids[j]);
      routes.weight.push_back(j == 0 ? w : (1.0f - w) / (K - 1));
    }
  }
  inline_ep.BeginStep();
  linked_ep.BeginStep();
  for (int layer = 0; layer < c.layers; ++layer) {
    auto inline_handle = inline_ep.Dispatch(layer, 0, 1, h.data(), T, routes);
    ASSERT_TRUE(inline_handle.ok()) << inline_handle.status().ToString();
    std::vector<float> want(int64_t{T} * D);
    ASSERT_TRUE(inline_ep.Combine(*inline_handle, want.data()).ok());

    auto handle = linked_ep.Dispatch(layer, 0, 1, nullptr, T, routes);
    ASSERT_TRUE(handle.ok()) << handle.status().ToString();
    ASSERT_TRUE(handle->link);
    // Rank 0's part of the link: each rank's rows in the order the messages list them.
    link.rows.clear();
    for (int r = 1; r <= W; ++r)
      for (int t : handle->rank_tokens[r])
        link.rows[r].insert(link.rows[r].end(), &h[int64_t{t} * D], &h[int64_t{t + 1} * D]);
    SumPlan plan;
    ASSERT_TRUE(linked_ep.CombineLinked(*handle, &plan).ok());
    std::vector<float> answers;
    for (int r = 1; r <= W; ++r) {
      const std::vector<float>& a = link.answers[r];
      ASSERT_EQ(static_cast<int64_t>(a.size()), handle->expected_vectors[r] * D) << "rank " << r;
      answers.insert(answers.end(), a.begin(), a.end());
    }
    std::vector<float> got(int64_t{T} * D);
    ApplySumPlan(plan, answers.data(), D, got.data());
    EXPECT_TRUE(testing::BitEqual(got, want)) << "layer " << layer << ", " << W << " workers";
    link.answers.clear();
  }
}

// 1 worker; 3 (whole experts spread unevenly); 8 (one expert each); 10 (experts sliced).
INSTANTIATE_TEST_SUITE_P(Workers, LinkedExchange, ::testing::Values(1, 3, 8, 10));

TEST(LinkedExchange, WorkerRefusesLinkedRowsWithoutALink) {
  const std::string dir = testing::ModelDir("mixtral-bf16-sharded");
  auto text = ReadFileToString(dir + "/config.json");
  ASSERT_TRUE(text.ok());
  const ModelConfig c = *ParseModelConfig(*text, "config.json");
  auto placement = ComputePlacement(c, 1);
  auto ckpt = Checkpoint::Open(dir);
  auto store = ExpertStore::Load(c, **ckpt, placement->by_rank[1]);
  ASSERT_TRUE(store.ok());
  ThreadPool pool(1);
  ExpertWorker worker(&*store, c.experts_per_token, c.hidden, &pool);
  std::vector<uint8_t> reply;
  wire::DispatchHeader linked;
  linked.link = 1;
  const Status s = worker.Process(linked, nullptr, 0, &reply);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("GPU link"), std::string::npos) << s.message();
}

TEST(GpuExchange, NcclOnlyWhenEveryRankHasAGpuOfItsOwn) {
  using E = GpuExchange;
  std::string notice;
  auto choose = [&](const std::string& flag, const std::vector<RankDevice>& ranks) {
    return ChooseGpuExchange(flag, ranks, &notice);
  };
  const std::vector<RankDevice> own = {{"a", "0000:01:00.0", ""},
                                       {"a", "0000:02:00.0", ""},
                                       {"b", "0000:01:00.0", ""}};  // same bus, other host
  EXPECT_EQ(*choose("auto", own), E::kNccl);
  EXPECT_EQ(notice, "");
  EXPECT_EQ(*choose("nccl", own), E::kNccl);
  EXPECT_EQ(*choose("host", own), E::kHost);
  EXPECT_EQ(*choose("mpi-link", own), E::kMpiLink);
  EXPECT_EQ(*choose("auto", {own[0]}), E::kHost);  // one rank: nothing to link

  const std::vector<RankDevice> shared = {{"a", "0000:01:00.0", ""}, {"a", "0000:01:00.0", ""}};
  EXPECT_EQ(*choose("auto", shared), E::kHost);
  EXPECT_NE(notice.find("ranks 0 and 1 share the GPU 0000:01:00.0 on a"), std::string::npos)
      << notice;
  auto refused = choose("nccl", shared);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("use --gpu-exchange host"), std::string::npos);
  EXPECT_EQ(*choose("mpi-link", shared), E::kMpiLink);  // the NCCL path's code, one GPU

  const std::vector<RankDevice> no_nccl = {{"a", "0000:01:00.0", ""},
                                           {"b", "0000:01:00.0", "NCCL could not be loaded"}};
  EXPECT_EQ(*choose("auto", no_nccl), E::kHost);
  EXPECT_NE(notice.find("rank 1 (b): NCCL could not be loaded"), std::string::npos) << notice;
  EXPECT_FALSE(choose("nccl", no_nccl).ok());
  EXPECT_EQ(*choose("mpi-link", no_nccl), E::kMpiLink);

  const std::vector<RankDevice> mixed = {{"a", "", ""}, {"b", "0000:01:00.0", ""}};
  EXPECT_EQ(*choose("auto", mixed), E::kHost);
  EXPECT_NE(notice.find("rank 0 (a) computes on the CPU"), std::string::npos) << notice;
  auto cpu_rank = choose("mpi-link", mixed);
  ASSERT_FALSE(cpu_rank.ok());
  EXPECT_NE(cpu_rank.status().message().find("--gpu-exchange mpi-link: rank 0 (a) computes on "
                                             "the CPU"),
            std::string::npos)
      << cpu_rank.status().message();
  const std::vector<RankDevice> cpus = {{"a", "", ""}, {"b", "", ""}};
  EXPECT_EQ(*choose("auto", cpus), E::kHost);
  EXPECT_EQ(notice, "");  // nothing to say where no rank has a GPU

  auto bad = choose("mpi", own);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("--gpu-exchange must be auto, nccl, host or mpi-link"),
            std::string::npos);
}

}  // namespace
}  // namespace moe
