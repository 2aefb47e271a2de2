// Kernels against plain reference loops, and the fixed-order promise.
#include "common/kernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "coordinator/attention.h"
#include "coordinator/rope.h"
#include "coordinator/router.h"
#include "test_util.h"

namespace moe {
namespace {

using testing::Random;
using testing::ToBf16;


// y = x W^T in double: the reference.
std::vector<double> RefMatMul(const std::vector<float>& x, int T, const std::vector<float>& w,
                              int N, int K) {
  std::vector<double> y(T * N);
  for (int t = 0; t < T; ++t)
    for (int n = 0; n < N; ++n) {
      double s = 0;
      for (int k = 0; k < K; ++k) s += double{x[t * K + k]} * w[n * K + k];
      y[t * N + n] = s;
    }
  return y;
}

TEST(Kernels, MatMulMatchesReferenceForEveryDtype) {
  ThreadPool pool(2);
  const int T = 7, N = 37, K = 83;  // not multiples of the lanes or tiles
  auto x = Random(T * K, 1);
  auto w = Random(N * K, 2);
  auto wb = ToBf16(w);
  std::vector<float> wb_wide(w.size());
  std::vector<uint16_t> wh(w.size());
  std::vector<float> wh_wide(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    wb_wide[i] = Bf16ToF32(wb[i]);
    // f16 bits via round-trip through the hardware-free path: pick exactly representable values.
    wh_wide[i] = Bf16ToF32(wb[i]);
  }
  struct Case { Matrix m; const std::vector<float>* exact; };
  std::vector<Case> cases = {{{w.data(), DType::kF32, N, K}, &w},
                             {{wb.data(), DType::kBF16, N, K}, &wb_wide}};
  for (const Case& c : cases) {
    std::vector<float> y(T * N);
    MatMul(x.data(), T, c.m, y.data(), pool);
    auto ref = RefMatMul(x, T, *c.exact, N, K);
    for (int i = 0; i < T * N; ++i) EXPECT_NEAR(y[i], ref[i], 1e-4 * (1 + std::fabs(ref[i])));
  }
}

TEST(Kernels, F16WeightsWidenExactly) {
  ThreadPool pool(1);
  // Half patterns for 1.0, -2.0, 0.5, a subnormal, 65504.
  std::vector<uint16_t> h = {0x3c00, 0xc000, 0x3800, 0x0001, 0x7bff};
  std::vector<float> expect = {1.0f, -2.0f, 0.5f, std::ldexp(1.0f, -24), 65504.0f};
  std::vector<float> row(5);
  WidenRow(Matrix{h.data(), DType::kF16, 1, 5}, 0, row.data());
  EXPECT_EQ(row, expect);
}

// The same row gives the same bits whatever else is in the batch and however many threads.
TEST(Kernels, MatMulRowIsIndependentOfBatchAndThreads) {
  const int N = 50, K = 300;
  auto w = Random(N * K, 3);
  auto x = Random(9 * K, 4);
  Matrix m{w.data(), DType::kF32, N, K};
  ThreadPool one(1), two(2);
  std::vector<float> alone(N), batch(9 * N);
  MatMul(x.data() + 5 * K, 1, m, alone.data(), one);
  MatMul(x.data(), 9, m, batch.data(), two);
  EXPECT_EQ(std::memcmp(alone.data(), batch.data() + 5 * N, N * sizeof(float)), 0);
  // The fixed order: one chain of fused multiply-adds along K.
  for (int n = 0; n < N; ++n) {
    float acc = 0;
    for (int k = 0; k < K; ++k) acc = std::fma(x[5 * K + k], w[n * K + k], acc);
    EXPECT_EQ(acc, alone[n]) << n;
  }
}

// A matrix in panels (whole, row and column slices, in blocks) gives the bits of the row-major
// matrix it was packed from.
TEST(Kernels, PanelsGiveTheBitsOfRowMajor) {
  ThreadPool pool(2);
  const int N = 37, K = 96, T = 11;  // a partial last panel; 11 rows: tiles of 8, 1, 1, 1
  auto w = ToBf16(Random(N * K, 7));
  auto x = Random(T * K, 8);
  const Matrix rows{w.data(), DType::kBF16, N, K};
  std::vector<uint16_t> packed(PanelElements(N, K));
  PackPanels(w.data(), DType::kBF16, K, 0, N, 0, K, packed.data());
  const Matrix panels{packed.data(), DType::kBF16, N, K, 0, 16 * K};
  for (int t : {1, T}) {
    std::vector<float> a(t * N), b(t * N);
    MatMul(x.data(), t, rows, a.data(), pool);
    MatMul(x.data(), t, panels, b.data(), pool);
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0) << "T=" << t;
    std::vector<float> row(K);
    WidenRow(panels, 21, row.data());
    for (int k = 0; k < K; ++k) ASSERT_EQ(row[k], Bf16ToF32(w[21 * K + k]));
  }
  // Rows [16, 37) and columns [32, 80), in panels and row-major.
  std::vector<float> a(T * 21), b(T * 21);
  MatMul(x.data() + 32, T, rows.Rows(16, 37).Columns(32, 80), a.data(), pool, K);
  MatMul(x.data() + 32, T, panels.Rows(16, 37).Columns(32, 80), b.data(), pool, K);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0);
  // Two blocks of 48 columns: y[b] = x[:, block b] W[:, block b]^T, each block its own chain.
  std::vector<float> blocked(2 * T * N), half(T * N);
  const MatMulJob job{x.data(), T, &panels, blocked.data(), -1, 2};
  MatMulMany(&job, 1, pool);
  for (int blk = 0; blk < 2; ++blk) {
    MatMul(x.data() + 48 * blk, T, rows.Columns(48 * blk, 48 * (blk + 1)), half.data(), pool, K);
    EXPECT_EQ(std::memcmp(half.data(), blocked.data() + blk * T * N, half.size() * 4), 0) << blk;
  }
}

TEST(Kernels, StridedSlicesMatchWholeMatrix) {
  ThreadPool pool(2);
  const int N = 12, K = 64, T = 3;
  auto w = Random(N * K, 5);
  auto x = Random(T * K, 6);
  Matrix m{w.data(), DType::kF32, N, K};
  std::vector<float> full(T * N), rows(T * 4);
  MatMul(x.data(), T, m, full.data(), pool);
  MatMul(x.data(), T, m.Rows(4, 8), rows.data(), pool);
  for (int t = 0; t < T; ++t)
    for (int n = 0; n < 4; ++n) EXPECT_EQ(rows[t * 4 + n], full[t * N + 4 + n]);
  // A column slice is a matmul over part of K, with x rows ldx apart.
  std::vector<float> part(T * N);
  MatMul(x.data() + 16, T, m.Columns(16, 48), part.data(), pool, K);
  for (int t = 0; t < T; ++t)
    for (int n = 0; n < N; ++n) {
      double s = 0;
      for (int k = 16; k < 48; ++k) s += double{x[t * K + k]} * w[n * K + k];
      EXPECT_NEAR(part[t * N + n], s, 1e-4);
    }
}

TEST(Kernels, RmsNormMatchesReference) {
  const int T = 3, D = 40;
  auto x = Random(T * D, 7);
  auto g = Random(D, 8);
  std::vector<float> y(T * D);
  const float eps = 0.25f;
  RmsNorm(x.data(), T, D, Matrix{g.data(), DType::kF32, 1, D}, eps, y.data());
  for (int t = 0; t < T; ++t) {
    double ms = 0;
    for (int d = 0; d < D; ++d) ms += double{x[t * D + d]} * x[t * D + d];
    ms /= D;
    for (int d = 0; d < D; ++d)
      EXPECT_NEAR(y[t * D + d], g[d] * x[t * D + d] / std::sqrt(ms + eps), 1e-5);
  }
}

TEST(Kernels, SoftmaxAndSiluMul) {
  std::vector<float> x = {1.0f, 2.0f, 3.0f, -1000.0f};
  Softmax(x.data(), 4);
  const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  EXPECT_NEAR(x[0], std::exp(1.0) / z, 1e-7);
  EXPECT_NEAR(x[2], std::exp(3.0) / z, 1e-7);
  EXPECT_EQ(x[3], 0.0f);
  std::vector<float> gate = {-2.0f, 0.0f, 3.0f}, up = {1.5f, 2.0f, -1.0f};
  SiluMul(gate.data(), up.data(), 3);
  for (int i = 0; i < 3; ++i) {
    const double g[] = {-2.0, 0.0, 3.0}, u[] = {1.5, 2.0, -1.0};
    EXPECT_NEAR(gate[i], g[i] / (1 + std::exp(-g[i])) * u[i], 1e-6);
  }
}

TEST(Rope, RotatesHalvesByPositionTimesFrequency) {
  const int hd = 8;
  const double theta = 10000.0;
  Rope rope(hd, theta);
  auto x = Random(2 * hd, 9);
  auto y = x;
  rope.Apply(y.data(), 2, 5);
  for (int h = 0; h < 2; ++h)
    for (int i = 0; i < hd / 2; ++i) {
      const double angle = 5 * std::pow(theta, -2.0 * i / hd);
      const double a = x[h * hd + i], b = x[h * hd + i + hd / 2];
      EXPECT_NEAR(y[h * hd + i], a * std::cos(angle) - b * std::sin(angle), 1e-5);
      EXPECT_NEAR(y[h * hd + i + hd / 2], b * std::cos(angle) + a * std::sin(angle), 1e-5);
    }
  auto z = x;
  rope.Apply(z.data(), 2, 0);  // position 0 is the identity
  EXPECT_EQ(z, x);
}

TEST(Router, SoftmaxTopKRenormalised) {
  ThreadPool pool(1);
  const int T = 5, E = 8, D = 16, K = 2;
  auto h = Random(T * D, 10);
  auto g = Random(E * D, 11);
  Routes routes;
  std::vector<float> scratch;
  Route(h.data(), T, Matrix{g.data(), DType::kF32, E, D}, K, pool, scratch, &routes);
  for (int t = 0; t < T; ++t) {
    std::vector<double> p(E);
    double mx = -1e30, z = 0;
    for (int e = 0; e < E; ++e) {
      double s = 0;
      for (int d = 0; d < D; ++d) s += double{h[t * D + d]} * g[e * D + d];
      p[e] = s;
      mx = std::max(mx, s);
    }
    for (double& v : p) z += (v = std::exp(v - mx));
    std::vector<int> idx(E);
    for (int e = 0; e < E; ++e) idx[e] = e;
    std::sort(idx.begin(), idx.end(), [&](int a, int b) { return p[a] > p[b]; });
    const int lo = std::min(idx[0], idx[1]), hi = std::max(idx[0], idx[1]);
    EXPECT_EQ(routes.expert[t * K], lo);
    EXPECT_EQ(routes.expert[t * K + 1], hi);
    EXPECT_NEAR(routes.weight[t * K], p[lo] / (p[lo] + p[hi]), 1e-6);
    EXPECT_NEAR(routes.weight[t * K] + routes.weight[t * K + 1], 1.0, 1e-6);
  }
}

// Attention against a direct loop over a full history, with and without a window.
TEST(Attention, MatchesReferenceLoop) {
  ThreadPool pool(2);
  const int H = 4, KV = 2, hd = 8, C = 11;
  for (int window : {0, 4}) {
    AttentionShape shape{H, KV, hd, window};
    auto q = Random(C * H * hd, 12), k = Random(C * KV * hd, 13), v = Random(C * KV * hd, 14);
    RollingKvCache cache(1, window ? window : C, KV * hd);
    std::vector<float> out(C * H * hd);
    AttendChunk(shape, q.data(), k.data(), v.data(), C, 0, cache, 0, out.data(), pool);
    for (int t = 0; t < C; ++t)
      for (int h = 0; h < H; ++h) {
        const int kvh = h / (H / KV), lo = window ? std::max(0, t - window + 1) : 0;
        std::vector<double> s;
        double mx = -1e30, z = 0;
        for (int j = lo; j <= t; ++j) {
          double d = 0;
          for (int i = 0; i < hd; ++i) d += double{q[(t * H + h) * hd + i]} * k[(j * KV + kvh) * hd + i];
          s.push_back(d / std::sqrt(double{hd}));
          mx = std::max(mx, s.back());
        }
        for (double& x : s) z += (x = std::exp(x - mx));
        for (int i = 0; i < hd; ++i) {
          double o = 0;
          for (int j = lo; j <= t; ++j) o += s[j - lo] / z * v[(j * KV + kvh) * hd + i];
          EXPECT_NEAR(out[(t * H + h) * hd + i], o, 1e-5) << "window " << window;
        }
      }
  }
}

// Chunked attention through a rolling buffer gives the same bits as one chunk over a full cache.
TEST(Attention, RollingBufferChunksEqualFullCache) {
  ThreadPool pool(2);
  const int H = 2, KV = 1, hd = 16, C = 23, W = 5;
  AttentionShape shape{H, KV, hd, W};
  auto q = Random(C * H * hd, 15), k = Random(C * KV * hd, 16), v = Random(C * KV * hd, 17);
  RollingKvCache full(1, C, KV * hd), rolling(1, W, KV * hd);
  std::vector<float> a(C * H * hd), b(C * H * hd);
  AttendChunk(shape, q.data(), k.data(), v.data(), C, 0, full, 0, a.data(), pool);
  for (int p0 = 0; p0 < C; p0 += 3) {
    const int n = std::min(3, C - p0);
    AttendChunk(shape, &q[p0 * H * hd], &k[p0 * KV * hd], &v[p0 * KV * hd], n, p0, rolling, 0,
                &b[p0 * H * hd], pool);
  }
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
}

// SiLU-times-up: every ISA gives the bits of the portable reference, and every value is within
// a few ulp of silu computed in double, over the whole range (tails, zeros, ties of the
// rounding in the exp's range reduction) and for a length with a tail.
TEST(Kernels, SiluMulIsExactAcrossIsasAndAccurate) {
  std::vector<float> gate, up;
  for (float g = -120.0f; g <= 120.0f; g += 0.0137f) gate.push_back(g);
  for (float g : {0.0f, -0.0f, 1e-30f, -1e-30f, 86.5f, -88.5f, 0.5f * 0.693147f, 1e4f, -1e4f})
    gate.push_back(g);
  for (size_t i = 0; i < gate.size(); ++i) up.push_back(0.5f + static_cast<float>(i % 7));
  std::vector<std::string> isas = {"generic"};
  for (const char* name : {"avx2", "avx512"})
    if (SetKernelIsa(name).ok()) isas.push_back(name);
  std::vector<std::vector<float>> out;
  for (const std::string& isa : isas) {
    ASSERT_TRUE(SetKernelIsa(isa).ok());
    out.push_back(gate);
    SiluMul(out.back().data(), up.data(), static_cast<int64_t>(gate.size()));
  }
  ASSERT_TRUE(SetKernelIsa("auto").ok());
  for (size_t i = 1; i < out.size(); ++i)
    EXPECT_EQ(std::memcmp(out[0].data(), out[i].data(), gate.size() * 4), 0) << isas[i];
  for (size_t i = 0; i < gate.size(); ++i) {
    const double g = gate[i], want = g / (1 + std::exp(-g)) * up[i];
    if (g < -88.73) {  // exp(-g) overflows f32: g / inf = -0 (the exact value is below 2e-36)
      EXPECT_EQ(out[0][i], 0.0f) << "g = " << g;
      continue;
    }
    EXPECT_NEAR(out[0][i], want,
                4 * std::numeric_limits<float>::epsilon() * std::fabs(want) + 1e-44)
        << "g = " << g;
  }
}

}  // namespace
}  // namespace moe

namespace moe {
namespace {

// Every instruction set computes the same bits as the portable reference.
TEST(Kernels, EveryIsaGivesIdenticalBits) {
  ThreadPool pool(2);
  std::vector<std::string> isas = {"generic"};
  for (const char* name : {"avx2", "avx512"})
    if (SetKernelIsa(name).ok()) isas.push_back(name);
  ASSERT_TRUE(SetKernelIsa("auto").ok());
  for (auto [T, N, K] : {std::tuple{1, 33, 100}, std::tuple{7, 50, 64}, std::tuple{13, 17, 300}}) {
    auto x = Random(T * K, 20), w = Random(N * K, 21);
    auto wb = ToBf16(w);
    std::vector<uint16_t> wh(w.size());
    for (size_t i = 0; i < w.size(); ++i) wh[i] = static_cast<uint16_t>(wb[i] >> 1);  // some f16
    for (const Matrix& m : {Matrix{w.data(), DType::kF32, N, K}, Matrix{wb.data(), DType::kBF16, N, K},
                            Matrix{wh.data(), DType::kF16, N, K}}) {
      std::vector<std::vector<float>> out;
      std::vector<float> dots, axpy;
      for (const std::string& isa : isas) {
        ASSERT_TRUE(SetKernelIsa(isa).ok());
        out.emplace_back(T * N);
        MatMul(x.data(), T, m, out.back().data(), pool);
        dots.push_back(Dot(x.data(), w.data(), K));
        std::vector<float> y(w.begin(), w.begin() + K);
        Axpy(0.37f, x.data(), y.data(), K);
        if (axpy.empty()) axpy = y;
        EXPECT_EQ(std::memcmp(axpy.data(), y.data(), K * 4), 0) << isa;
      }
      for (size_t i = 1; i < out.size(); ++i) {
        EXPECT_EQ(std::memcmp(out[0].data(), out[i].data(), out[0].size() * 4), 0)
            << isas[i] << " vs generic, dtype " << DTypeName(m.dtype) << " T=" << T << " K=" << K;
        EXPECT_EQ(dots[0], dots[i]) << isas[i];
      }
    }
  }
  ASSERT_TRUE(SetKernelIsa("auto").ok());
  EXPECT_FALSE(SetKernelIsa("sse9").ok());
}

}  // namespace
}  // namespace moe
