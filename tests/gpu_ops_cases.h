// Inputs and the CPU's answers for the GPU's small operations, shared by the tests that run
// them on a device (tests/gpu_ops_test.cc, through gpu_ops.h) and on the host
// (tests/simt/ops_test.cc, the same kernels through tests/simt/simt_host.h). Each case's Check
// holds a result to the CPU operation.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/dtype.h"
#include "common/kernels.h"
#include "common/thread_pool.h"
#include "coordinator/rope.h"
#include "coordinator/router.h"
#include "tests/test_util.h"

namespace moe::testing {

// y [T, D] = rmsnorm(x) * w, eps 0.1: within 1e-5 of the CPU. D is past a block of 256
// threads and not a multiple of it, so every warp of the block's sum holds a share.
struct RmsNormCase {
  static constexpr int T = 5, D = 1000;
  static constexpr float eps = 0.1f;
  std::vector<float> x = Random(T * D, 1);
  std::vector<uint16_t> w = ToBf16(Random(D, 2));
  std::vector<float> want = std::vector<float>(T * D);
  RmsNormCase() {
    RmsNorm(x.data(), T, D, Matrix{w.data(), DType::kBF16, 1, D}, eps, want.data());
  }
  void Check(const std::vector<float>& y) const {
    EXPECT_LE(RelativeMaxError(y.data(), want.data(), want.size()), 1e-5);
  }
};

// x [T, D] = rows `ids` of a bf16 table, widened exactly.
struct EmbedCase {
  static constexpr int T = 5, D = 96, V = 40;
  std::vector<uint16_t> table = ToBf16(Random(V * D, 3));
  std::vector<int32_t> ids = {3, 0, 39, 7, 7};
  void Check(const std::vector<float>& x) const {
    for (int t = 0; t < T; ++t)
      for (int d = 0; d < D; ++d) ASSERT_EQ(x[t * D + d], Bf16ToF32(table[ids[t] * D + d]));
  }
};

// The experts' SiLU-times-up fused with the rounding to bf16, over `rows` rows of F (gate then
// up in each row of gate_up): every value within one bf16 step of the CPU's result rounded.
struct SiluMulCase {
  static constexpr int rows = 10, F = 100;
  std::vector<float> gate_up = std::vector<float>(2 * rows * F);
  std::vector<float> want = Random(rows * F, 4);
  SiluMulCase() {
    const std::vector<float> up = Random(rows * F, 5);
    for (int r = 0; r < rows; ++r)
      for (int f = 0; f < F; ++f) {
        gate_up[r * 2 * F + f] = want[r * F + f];
        gate_up[r * 2 * F + F + f] = up[r * F + f];
      }
    SiluMul(want.data(), up.data(), rows * F);
  }
  void Check(const std::vector<uint16_t>& act) const {
    for (int i = 0; i < rows * F; ++i) {
      const float w = Bf16ToF32(F32ToBf16(want[i]));
      ASSERT_LE(std::fabs(Bf16ToF32(act[i]) - w), std::fabs(w) / 128) << i;
    }
  }
};

// x [T, heads, hd] rotated in place at positions `pos`: within 1e-5 of coordinator/rope.h.
struct RopeCase {
  static constexpr int T = 4, heads = 3, hd = 16;
  std::vector<float> x = Random(T * heads * hd, 6);
  std::vector<int32_t> pos = {0, 5, 17, 200};
  std::vector<float> inv_freq = std::vector<float>(hd / 2);
  std::vector<float> want = x;
  RopeCase() {
    const Rope rope(hd, 1e6);
    for (int t = 0; t < T; ++t) rope.Apply(&want[t * heads * hd], heads, pos[t]);
    inv_freq = rope.inv_freq();
  }
  void Check(const std::vector<float>& got) const {
    EXPECT_LE(RelativeMaxError(got.data(), want.data(), want.size()), 1e-5);
  }
};

// The router's softmax, top-k and renormalisation from logits [R, E]: the CPU router's experts
// (sorted by id) and weights within 1e-6.
struct RouteCase {
  static constexpr int E = 8, K = 2, R = 6;
  std::vector<float> logits = Random(R * E, 7);
  Routes routes;
  RouteCase() {
    // The CPU router from logits: an identity "gate" over the logits as hidden rows.
    std::vector<float> eye(E * E, 0.0f), scratch;
    for (int e = 0; e < E; ++e) eye[e * E + e] = 1.0f;
    ThreadPool pool(1);
    Route(logits.data(), R, Matrix{eye.data(), DType::kF32, E, E}, K, pool, scratch, &routes);
  }
  void Check(const std::vector<int32_t>& ids, const std::vector<float>& weights) const {
    for (int i = 0; i < R * K; ++i) {
      EXPECT_EQ(ids[i], routes.expert[i]) << i;
      EXPECT_NEAR(weights[i], routes.weight[i], 1e-6) << i;
    }
  }
};

// The first maximum of each row of logits [R, V]; rows 0 and 1 hold their maximum twice, far
// apart and the other way round to the threads that see them.
struct ArgmaxCase {
  static constexpr int R = 6, V = 1000;
  std::vector<float> logits = Random(R * V, 8);
  ArgmaxCase() {
    logits[10] = logits[700] = 9.0f;
    logits[V + 3] = logits[V + 900] = 9.0f;
  }
  void Check(const std::vector<int32_t>& ids) const {
    for (int r = 0; r < R; ++r)
      EXPECT_EQ(ids[r], std::max_element(logits.begin() + r * V, logits.begin() + (r + 1) * V) -
                            (logits.begin() + r * V));
  }
};

// The router's logits [T, E] = h [T, D] . w [E, D]^T in f32 (w bf16): within 1e-5 of the
// largest, against sums in double. D is not a multiple of a warp.
struct RouterLogitsCase {
  static constexpr int T = 3, E = 8, D = 300;
  std::vector<float> h = Random(T * D, 9);
  std::vector<uint16_t> w = ToBf16(Random(E * D, 10));
  std::vector<float> want = std::vector<float>(T * E);
  RouterLogitsCase() {
    for (int t = 0; t < T; ++t)
      for (int e = 0; e < E; ++e) {
        double s = 0;
        for (int d = 0; d < D; ++d) s += double{h[t * D + d]} * Bf16ToF32(w[e * D + d]);
        want[t * E + e] = static_cast<float>(s);
      }
  }
  void Check(const std::vector<float>& logits) const {
    EXPECT_LE(RelativeMaxError(logits.data(), want.data(), want.size()), 1e-5);
  }
};

// f32 rounded to bf16, to nearest even: the values that are exactly halfway included.
struct Bf16RoundingCase {
  static constexpr int n = 1000;
  std::vector<float> x = Random(n, 11);
  Bf16RoundingCase() {
    for (uint32_t i = 0; i < 16; ++i) {
      const uint32_t bits = ((0x3f80u + i) << 16) | 0x8000u;  // halfway between two bf16s
      std::memcpy(&x[i], &bits, 4);
    }
  }
  void Check(const std::vector<uint16_t>& y) const {
    for (int i = 0; i < n; ++i) ASSERT_EQ(y[i], F32ToBf16(x[i])) << i;
  }
};

// bf16 rows [V, D] picked by index, copied as they are.
struct GatherBf16Case {
  static constexpr int V = 9, D = 300;
  std::vector<uint16_t> rows = ToBf16(Random(int64_t{V} * D, 6));
  std::vector<int32_t> index = {4, 0, 4, 8, 2};
  void Check(const std::vector<uint16_t>& picked) const {
    for (size_t i = 0; i < index.size(); ++i)
      EXPECT_EQ(0, std::memcmp(&picked[i * D], &rows[int64_t{index[i]} * D], D * 2)) << i;
  }
};

}  // namespace moe::testing
