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
  const int T = 5, D = 96, V = 40;
  auto x = Random(T * D, 1);
  auto w = ToBf16(Random(D, 2));
  std::vector<float> cpu(T * D);
  RmsNorm(x.data(), T, D, Matrix{w.data(), DType::kBF16, 1, D}, 0.1f, cpu.data());
  Dev<float> dx(x), dy(T * D);
  Dev<uint16_t> dw(w);
  ASSERT_TRUE(gpu::RmsNorm(dx.p, dw.p, 0.1f, T, D, dy.p).ok());
  EXPECT_LE(testing::RelativeMaxError(dy.Host().data(), cpu.data(), cpu.size()), 1e-5);

  auto table = ToBf16(Random(V * D, 3));
  std::vector<int32_t> ids = {3, 0, 39, 7, 7};
  Dev<int32_t> dids(ids);
  Dev<uint16_t> dtable(table);
  ASSERT_TRUE(gpu::Embed(dids.p, dtable.p, T, D, dy.p).ok());
  auto emb = dy.Host();
  for (int t = 0; t < T; ++t)
    for (int d = 0; d < D; ++d) ASSERT_EQ(emb[t * D + d], Bf16ToF32(table[ids[t] * D + d]));

  // The experts' SiLU-times-up, fused with the rounding to bf16, over 10 rows of F = 100 (gate
  // then up in each row): every value within one bf16 step of the CPU's result rounded.
  auto g = Random(1000, 4), u = Random(1000, 5);
  auto g_cpu = g;
  SiluMul(g_cpu.data(), u.data(), 1000);
  std::vector<float> gate_up(2000);
  for (int r = 0; r < 10; ++r)
    for (int f = 0; f < 100; ++f) {
      gate_up[r * 200 + f] = g[r * 100 + f];
      gate_up[r * 200 + 100 + f] = u[r * 100 + f];
    }
  Dev<float> dgu(gate_up);
  Dev<uint16_t> dact(size_t{1000});
  ASSERT_TRUE(gpu::SiluMulToBf16(dgu.p, 10, 100, dact.p).ok());
  const std::vector<uint16_t> act = dact.Host();
  for (int i = 0; i < 1000; ++i) {
    const float want = Bf16ToF32(F32ToBf16(g_cpu[i]));
    ASSERT_LE(std::fabs(Bf16ToF32(act[i]) - want), std::fabs(want) / 128) << i;
  }
}

TEST(GpuOps, RopeRouterArgmaxMatchCpu) {
  REQUIRE_GPU();
  const int T = 4, heads = 3, hd = 16;
  Rope rope(hd, 1e6);
  auto x = Random(T * heads * hd, 6);
  auto cpu = x;
  std::vector<int32_t> pos = {0, 5, 17, 200};
  for (int t = 0; t < T; ++t) rope.Apply(&cpu[t * heads * hd], heads, pos[t]);
  std::vector<float> inv(hd / 2);
  for (int i = 0; i < hd / 2; ++i) inv[i] = 1.0f / std::pow(1e6f, 2.0f * i / hd);
  Dev<float> dx(x), dinv(inv);
  Dev<int32_t> dpos(pos);
  ASSERT_TRUE(gpu::Rope(dx.p, dpos.p, dinv.p, T, heads, hd).ok());
  EXPECT_LE(testing::RelativeMaxError(dx.Host().data(), cpu.data(), cpu.size()), 1e-5);

  const int E = 8, K = 2, R = 6;
  auto logits = Random(R * E, 7);
  Routes routes;
  std::vector<float> scratch;
  // The CPU router from logits: route with an identity "gate" over one-hot hidden rows.
  std::vector<float> eye(E * E, 0.0f);
  for (int e = 0; e < E; ++e) eye[e * E + e] = 1.0f;
  ThreadPool pool(1);
  Route(logits.data(), R, Matrix{eye.data(), DType::kF32, E, E}, K, pool, scratch, &routes);
  Dev<float> dl(logits), dw(R * K);
  Dev<int32_t> di(R * K);
  ASSERT_TRUE(gpu::RouteTopK(dl.p, R, E, K, di.p, dw.p).ok());
  auto ids = di.Host();
  auto weights = dw.Host();
  for (int i = 0; i < R * K; ++i) {
    EXPECT_EQ(ids[i], routes.expert[i]);
    EXPECT_NEAR(weights[i], routes.weight[i], 1e-6);
  }

  const int V = 1000;
  auto big = Random(R * V, 8);
  Dev<float> db(big);
  Dev<int32_t> dargmax(R);
  ASSERT_TRUE(gpu::Argmax(db.p, R, V, dargmax.p).ok());
  auto am = dargmax.Host();
  for (int r = 0; r < R; ++r)
    EXPECT_EQ(am[r], std::max_element(big.begin() + r * V, big.begin() + (r + 1) * V) -
                         (big.begin() + r * V));
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

  // bf16 rows picked by index, copied as they are.
  const auto rows = ToBf16(Random(int64_t{V} * D, 6));
  const std::vector<int32_t> index = {4, 0, 4, 8, 2};
  Dev<uint16_t> drows(rows), dpicked(index.size() * D);
  Dev<int32_t> dindex(index);
  ASSERT_TRUE(gpu::GatherRowsBf16(drows.p, dindex.p, static_cast<int>(index.size()), D,
                                  dpicked.p).ok());
  const std::vector<uint16_t> picked = dpicked.Host();
  for (size_t i = 0; i < index.size(); ++i)
    EXPECT_EQ(0, std::memcmp(&picked[i * D], &rows[int64_t{index[i]} * D], D * 2)) << i;
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
// four streams: within bf16 tolerance of the CPU, and the two GPU runs bit-equal (each expert's
// output has a place of its own, so the streams do not change the sums).
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
    EXPECT_EQ(results[0].generated, results[1].generated) << name;
    EXPECT_LE(testing::RelativeMaxError(results[1].prompt_logits.data(),
                                        results[0].prompt_logits.data(),
                                        results[0].prompt_logits.size()),
              2e-2)
        << name;
    EXPECT_LE(testing::RelativeMaxError(results[1].gen_logits.data(), results[0].gen_logits.data(),
                                        results[0].gen_logits.size()),
              2e-2)
        << name;
    EXPECT_EQ(results[2].generated, results[1].generated) << name << ", 4 expert streams";
    EXPECT_EQ(results[2].prompt_logits, results[1].prompt_logits) << name << ", 4 expert streams";
    EXPECT_EQ(results[2].gen_logits, results[1].gen_logits) << name << ", 4 expert streams";
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
