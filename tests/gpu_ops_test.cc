// GPU operations against the CPU operations (label gpu; each test skips where no GPU is
// visible). bf16 matmuls round activations to bf16: relative 2e-2; the rest: close to f32.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "common/cuda/gpu_attention.h"
#include "common/cuda/gpu_ops.h"
#include "common/cuda/device_weights.h"
#include "common/cuda/gpu_sampling.h"
#include "common/kernels.h"
#include "coordinator/attention.h"
#include "coordinator/generator.h"
#include "coordinator/rope.h"
#include "coordinator/router.h"
#include "coordinator/runtime.h"
#include "coordinator/sampler.h"
#include "test_util.h"
#include "tests/gpu_ops_cases.h"
#include "tests/paged_attention_case.h"

namespace moe {
namespace {

using testing::Random;
using testing::ToBf16;


#define REQUIRE_GPU()                                                          \
  if (gpu::DeviceCount() == 0) GTEST_SKIP() << "no GPU: " << gpu::NoDeviceReason()

// Device copies that free themselves.
template <typename T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(const std::vector<T>& host) : n(host.size()) {
    p = static_cast<T*>(gpu::Alloc(n * sizeof(T)).value());
    EXPECT_TRUE(gpu::CopyToDevice(p, host.data(), n * sizeof(T)).ok());
  }
  explicit Dev(size_t count) : n(count) { p = static_cast<T*>(gpu::Alloc(n * sizeof(T)).value()); }
  ~Dev() { gpu::Free(p); }
  std::vector<T> Host() const {
    std::vector<T> h(n);
    EXPECT_TRUE(gpu::CopyToHost(h.data(), p, n * sizeof(T)).ok());
    return h;
  }
};

TEST(GpuOps, RmsNormEmbedSiluMatchCpu) {
  REQUIRE_GPU();
  const testing::RmsNormCase norm;
  Dev<float> dx(norm.x), dy(norm.want.size());
  Dev<uint16_t> dw(norm.w);
  ASSERT_TRUE(gpu::RmsNorm(dx.p, dw.p, norm.eps, norm.T, norm.D, dy.p).ok());
  norm.Check(dy.Host());

  const testing::EmbedCase embed;
  Dev<int32_t> dids(embed.ids);
  Dev<uint16_t> dtable(embed.table);
  Dev<float> dembedded(size_t{embed.T} * embed.D);
  ASSERT_TRUE(gpu::Embed(dids.p, dtable.p, embed.T, embed.D, dembedded.p).ok());
  embed.Check(dembedded.Host());

  const testing::SiluMulCase silu;
  Dev<float> dgu(silu.gate_up);
  Dev<uint16_t> dact(size_t{silu.rows} * silu.F);
  ASSERT_TRUE(gpu::SiluMulToBf16(dgu.p, silu.rows, silu.F, dact.p).ok());
  silu.Check(dact.Host());
}

TEST(GpuOps, RopeRouterArgmaxMatchCpu) {
  REQUIRE_GPU();
  const testing::RopeCase rope;
  Dev<float> dx(rope.x), dinv(rope.inv_freq);
  Dev<int32_t> dpos(rope.pos);
  ASSERT_TRUE(gpu::Rope(dx.p, dpos.p, dinv.p, rope.T, rope.heads, rope.hd).ok());
  rope.Check(dx.Host());

  const testing::RouteCase route;
  Dev<float> dl(route.logits), dw(route.R * route.K);
  Dev<int32_t> di(route.R * route.K);
  ASSERT_TRUE(gpu::RouteTopK(dl.p, route.R, route.E, route.K, di.p, dw.p).ok());
  route.Check(di.Host(), dw.Host());

  const testing::ArgmaxCase argmax;
  Dev<float> db(argmax.logits);
  Dev<int32_t> dargmax(argmax.R);
  ASSERT_TRUE(gpu::Argmax(db.p, argmax.R, argmax.V, dargmax.p).ok());
  argmax.Check(dargmax.Host());
}

TEST(GpuOps, RouterLogitsAndBf16RoundingMatchCpu) {
  REQUIRE_GPU();
  const testing::RouterLogitsCase router;
  Dev<float> dh(router.h), dlogits(router.want.size());
  Dev<uint16_t> dw(router.w);
  ASSERT_TRUE(
      gpu::RouterLogits(dh.p, dw.p, router.T, router.E, router.D, dlogits.p).ok());
  router.Check(dlogits.Host());

  const testing::Bf16RoundingCase rounding;
  Dev<float> dx(rounding.x);
  Dev<uint16_t> dy(size_t{rounding.n});
  ASSERT_TRUE(gpu::ToBf16(dx.p, rounding.n, dy.p).ok());
  rounding.Check(dy.Host());
}

// Two sequences in one step over one paged pool: A's prefill chunk of 21 rows at positions
// 9..29 (a full tile and a part) and B's decode row at position 40, blocks in scrambled order.
TEST(GpuOps, PagedAttentionMatchesCpu) {
  REQUIRE_GPU();
  for (int window : {0, 5, 37}) {
    // Decode rows seeing 6, 41 and 150 keys, and prefill chunks of 21 rows after 9 and 40.
    testing::PagedAttentionCase c({{5, 1}, {9, 21}, {40, 1}, {40, 21}, {149, 1}}, window, 128);
    const int prefill = c.tiles() - c.decode_tiles;
    const int keys = c.max_decode_keys, pairs = c.decode_tiles * c.H;
    for (gpu::DecodeSplit split : {gpu::DecodeSplit{}, gpu::SplitDecode(keys, pairs),
                                   gpu::SplitDecode(keys, pairs, 32)}) {
      Dev<float> dk(c.k_cache), dv(c.v_cache), dq(c.q), dks(c.k_step), dvs(c.v_step),
          dout(c.want.size()),
          dwork(std::max<int64_t>(1, gpu::DecodeWorkspaceFloats(split, c.decode_tiles, c.H, c.hd)));
      Dev<int32_t> dpos(c.pos), dat(c.table_at), dtables(c.tables), drow0(c.tile_row0),
          drows(c.tile_rows);
      Dev<int32_t> darrivals(std::vector<int32_t>(gpu::kSplitBlocks, 0));
      split.workspace = dwork.p;
      split.arrivals = darrivals.p;
      const gpu::PagedKv kv{dk.p, dv.p, c.L, c.B, c.KV, c.hd};
      const gpu::StepRows step{dpos.p, dat.p, dtables.p};
      ASSERT_TRUE(
          gpu::KvWrite(kv, c.layer, step, dks.p, dvs.p, drow0.p, drows.p, c.tiles()).ok());
      ASSERT_TRUE(gpu::PagedAttention(kv, c.layer, step, dq.p, c.H, window, drow0.p, drows.p,
                                      c.decode_tiles, false, split, dout.p).ok());
      ASSERT_TRUE(gpu::PagedAttention(kv, c.layer, step, dq.p, c.H, window,
                                      drow0.p + c.decode_tiles, drows.p + c.decode_tiles, prefill,
                                      true, gpu::DecodeSplit{}, dout.p).ok());
      EXPECT_LE(testing::RelativeMaxError(dout.Host().data(), c.want.data(), c.want.size()), 1e-5)
          << "window " << window << ", " << split.splits << " splits of " << split.keys;
      const std::vector<int32_t> arrivals = darrivals.Host();  // left zero for the next step
      EXPECT_EQ(std::count(arrivals.begin(), arrivals.end(), 0), gpu::kSplitBlocks);
    }
  }
}

// The device sampler against coordinator/sampler.h on the same logits and seeds: greedy,
// temperature alone, top-k and top-p rows in one call, many draws.
TEST(GpuOps, SamplingMatchesCpuSampler) {
  REQUIRE_GPU();
  const int V = 3000;
  const std::vector<SamplingParams> params = {
      {0.0f, 0, 1.0f, 1}, {0.8f, 0, 1.0f, 2}, {1.0f, 40, 1.0f, 3}, {0.7f, 0, 0.9f, 4},
      {1.3f, 100, 0.5f, 5}};
  const int R = static_cast<int>(params.size());
  std::vector<Sampler> cpu, dev;
  for (const SamplingParams& p : params) {
    cpu.emplace_back(p);
    dev.emplace_back(p);
  }
  gpu::DeviceSampler sampler;
  for (int round = 0; round < 50; ++round) {
    auto logits = Random(R * V, 100 + round, 4.0f);
    Dev<float> dl(logits);
    std::vector<gpu::SampleSpec> specs;
    for (Sampler& s : dev)
      specs.push_back({s.params().temperature, s.params().top_k, s.params().top_p, s.NextBits()});
    std::vector<int> ids;
    ASSERT_TRUE(sampler.Sample(dl.p, R, V, specs, &ids).ok());
    for (int r = 0; r < R; ++r)
      ASSERT_EQ(ids[r], cpu[r].Next(&logits[r * V], V)) << "round " << round << " row " << r;
  }
}

TEST(GpuOps, Bf16MatMulMatchesCpu) {
  REQUIRE_GPU();
  const int T = 9, N = 130, K = 200;
  auto x = Random(T * K, 12);
  auto w = ToBf16(Random(N * K, 13, 0.1f));
  std::vector<float> cpu(T * N);
  ThreadPool pool(2);
  MatMul(x.data(), T, Matrix{w.data(), DType::kBF16, N, K}, cpu.data(), pool);
  Dev<float> dx(x), dy(T * N);
  Dev<uint16_t> dw(w), scratch(T * K);
  // x rounded to bf16, then the cuBLAS GEMM: what every projection on the device does.
  ASSERT_TRUE(gpu::ToBf16(dx.p, int64_t{T} * K, scratch.p).ok());
  ASSERT_TRUE(gpu::GemmBf16(scratch.p, T, K, dw.p, N, K, K, false, dy.p).ok());
  EXPECT_LE(testing::RelativeMaxError(dy.Host().data(), cpu.data(), cpu.size()), 2e-2);
}

// The combine's sums: the device follows the host's plan to the bit.
TEST(GpuOps, SumPlanAndBf16GatherMatchHost) {
  REQUIRE_GPU();
  const int D = 300, V = 9;
  const auto v = Random(int64_t{V} * D, 5);
  const SumPlan plan = testing::RandomSumPlan(6, V, D, 3);
  std::vector<float> want(int64_t{plan.outputs()} * D);
  ApplySumPlan(plan, v.data(), D, want.data());
  Dev<float> dv(v), dout(want.size());
  gpu::DeviceBuffer room;
  auto device_plan = gpu::UploadSumPlan(plan, room);
  ASSERT_TRUE(device_plan.ok());
  ASSERT_TRUE(gpu::ApplySumPlan(*device_plan, dv.p, D, false, dout.p).ok());
  EXPECT_TRUE(testing::BitEqual(dout.Host(), want));

  const testing::GatherBf16Case gather;
  const int n = static_cast<int>(gather.index.size());
  Dev<uint16_t> drows(gather.rows), dpicked(size_t{gather.D} * n);
  Dev<int32_t> dindex(gather.index);
  ASSERT_TRUE(gpu::GatherRowsBf16(drows.p, dindex.p, n, gather.D, dpicked.p).ok());
  gather.Check(dpicked.Host());
}

TEST(GpuOps, DeviceCountIsZeroOrReasonIsEmpty) {
  // Runs everywhere: without a GPU the count is 0 and the reason says why; with one, no reason.
  if (gpu::DeviceCount() == 0)
    EXPECT_FALSE(gpu::NoDeviceReason().empty());
  else
    EXPECT_TRUE(gpu::NoDeviceReason().empty());
}

}  // namespace
}  // namespace moe

namespace moe {
namespace {

// The whole model on the GPU against the CPU on the bf16 test checkpoints (weights exact in
// bf16 on both): every prompt and generated position's logits within 2e-2 of the largest, and
// the same greedy continuation. A window model exercises the paged window and its releases.
// The CPU, then the GPU with a layer's expert GEMMs one after another and side by side on
// four streams, each within bf16 tolerance of the CPU with its greedy tokens (cuBLAS promises
// the same bits only with one stream active, so four are not held bit-equal to one).
TEST(GpuModel, LogitsAndGreedyTokensMatchCpu) {
  REQUIRE_GPU();
  struct Run {
    const char* device;
    int expert_streams;
  };
  for (const char* name : {"mixtral-bf16-sharded", "mistral-bf16", "mixtral-window"}) {
    std::vector<GenerateResult> results;
    for (const Run run : {Run{"cpu", 1}, Run{"cuda", 1}, Run{"cuda", 4}}) {
      RuntimeOptions o;
      o.model_dir = std::string(MOE_TEST_DATA) + "/models/" + name;
      o.device = run.device;
      o.gpu_expert_streams = run.expert_streams;
      auto rt = Runtime::Open(o);
      ASSERT_TRUE(rt.ok()) << name << " " << run.device << ": " << rt.status().message();
      ASSERT_EQ(rt.value()->model().on_device(), std::string(run.device) == "cuda");
      GenerateOptions g;
      g.max_tokens = 12;
      g.ignore_eos = true;
      g.keep_logits = true;
      g.prefill_chunk = 5;  // several chunks: cached keys and new ones
      std::vector<int> prompt;
      for (int i = 0; i < 23; ++i) prompt.push_back(1 + (i * 37) % 200);
      auto r = Generate(rt.value()->model(), prompt, g, nullptr);
      ASSERT_TRUE(r.ok()) << name << " " << run.device << ": " << r.status().message();
      results.push_back(std::move(r).value());
    }
    for (const int gpu : {1, 2}) {
      const std::string what = std::string(name) + (gpu == 2 ? ", 4 expert streams" : "");
      EXPECT_EQ(results[gpu].generated, results[0].generated) << what;
      EXPECT_LE(testing::RelativeMaxError(results[gpu].prompt_logits.data(),
                                          results[0].prompt_logits.data(),
                                          results[0].prompt_logits.size()),
                2e-2)
          << what;
      EXPECT_LE(testing::RelativeMaxError(results[gpu].gen_logits.data(),
                                          results[0].gen_logits.data(),
                                          results[0].gen_logits.size()),
                2e-2)
          << what;
    }
  }
}

// One step on the GPU holding a decode token of sequence B (its prefix cached) and a prefill
// chunk of sequence A, against each alone: the batch changes cuBLAS's shapes, so the logits
// agree within bf16 tolerance and every row's greedy token is the same.
TEST(GpuModel, BatchedSequencesMatchAlone) {
  REQUIRE_GPU();
  RuntimeOptions o;
  o.model_dir = std::string(MOE_TEST_DATA) + "/models/mixtral-bf16-sharded";
  o.device = "cuda";
  auto rt = Runtime::Open(o);
  ASSERT_TRUE(rt.ok()) << rt.status().message();
  Model& model = rt.value()->model();
  const int V = model.config().vocab;
  const std::vector<int> a = {1, 17, 90, 3, 250, 41}, b = {1, 8, 8, 120, 77, 5, 301, 9, 64};
  const std::vector<int> b_prefix(b.begin(), b.end() - 1);
  std::vector<float> a_alone(6 * V), b_alone(V), scratch;
  auto cache_a = model.NewCache(16), cache_b = model.NewCache(16);
  ASSERT_TRUE(model.Forward(a, {{cache_a.get(), 0, 6}}, {0, 1, 2, 3, 4, 5}, a_alone.data()).ok());
  ASSERT_TRUE(Prefill(model, *cache_b, b_prefix, 8, nullptr, &scratch).ok());
  ASSERT_TRUE(model.Forward({b.back()}, {{cache_b.get(), 8, 1}}, {0}, b_alone.data()).ok());
  auto cache_a2 = model.NewCache(16), cache_b2 = model.NewCache(16);
  ASSERT_TRUE(Prefill(model, *cache_b2, b_prefix, 8, nullptr, &scratch).ok());
  std::vector<int> tokens = {b.back()};
  tokens.insert(tokens.end(), a.begin(), a.end());
  std::vector<float> both(7 * V);
  ASSERT_TRUE(model
                  .Forward(tokens, {{cache_b2.get(), 8, 1}, {cache_a2.get(), 0, 6}},
                           {0, 1, 2, 3, 4, 5, 6}, both.data())
                  .ok());
  std::vector<float> alone = b_alone;
  alone.insert(alone.end(), a_alone.begin(), a_alone.end());
  EXPECT_LE(testing::RelativeMaxError(both.data(), alone.data(), alone.size()), 2e-2);
  for (int r = 0; r < 7; ++r) {
    const auto row = [&](const std::vector<float>& l) {
      return std::max_element(l.begin() + int64_t{r} * V, l.begin() + int64_t{r + 1} * V) -
             (l.begin() + int64_t{r} * V);
    };
    EXPECT_EQ(row(both), row(alone)) << "row " << r;
  }
}

}  // namespace
}  // namespace moe
