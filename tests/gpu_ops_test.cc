// GPU operations against the CPU operations (label gpu; each test skips where no GPU is
// visible). bf16 matmuls round activations to bf16: relative 2e-2; the rest: close to f32.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "common/cuda/gpu_ops.h"
#include "common/kernels.h"
#include "coordinator/attention.h"
#include "coordinator/rope.h"
#include "coordinator/router.h"
#include "test_util.h"

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

  auto g = Random(1000, 4), u = Random(1000, 5);
  auto g_cpu = g;
  SiluMul(g_cpu.data(), u.data(), 1000);
  Dev<float> dg(g), du(u);
  ASSERT_TRUE(gpu::SiluMul(dg.p, du.p, 1000).ok());
  EXPECT_LE(testing::RelativeMaxError(dg.Host().data(), g_cpu.data(), 1000), 1e-5);
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

TEST(GpuOps, AttentionMatchesCpu) {
  REQUIRE_GPU();
  const int H = 4, KV = 2, hd = 32, p0 = 9, C = 7, P = p0 + C;
  for (int window : {0, 5}) {
    auto q = Random(C * H * hd, 9), k = Random(P * KV * hd, 10), v = Random(P * KV * hd, 11);
    // CPU: the cache holds positions < p0, the chunk the rest.
    RollingKvCache cache(1, P, KV * hd);
    for (int j = 0; j < p0; ++j) {
      std::copy(&k[j * KV * hd], &k[(j + 1) * KV * hd], cache.K(0, j));
      std::copy(&v[j * KV * hd], &v[(j + 1) * KV * hd], cache.V(0, j));
    }
    std::vector<float> cpu(C * H * hd);
    ThreadPool pool(1);
    AttendChunk({H, KV, hd, window}, q.data(), &k[p0 * KV * hd], &v[p0 * KV * hd], C, p0, cache,
                0, cpu.data(), pool);
    Dev<float> dq(q), dk(k), dv(v), dout(C * H * hd);
    ASSERT_TRUE(gpu::Attention(dq.p, dk.p, dv.p, C, p0, H, KV, hd, window, dout.p).ok());
    EXPECT_LE(testing::RelativeMaxError(dout.Host().data(), cpu.data(), cpu.size()), 1e-5)
        << "window " << window;
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
  ASSERT_TRUE(gpu::MatMulBf16(dx.p, T, dw.p, N, K, scratch.p, dy.p).ok());
  EXPECT_LE(testing::RelativeMaxError(dy.Host().data(), cpu.data(), cpu.size()), 2e-2);
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
