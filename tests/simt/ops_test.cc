// The GPU's small operations (common/cuda/gpu_ops_kernels.cuh) run on the host by
// tests/simt/simt_host.h, against the CPU's operations (tests/gpu_ops_cases.h), launched as
// common/cuda/gpu_ops.cu launches them. Runs everywhere; tests/gpu_ops_test.cc runs the same
// cases on a device.
#include "tests/simt/simt_host.h"
// (the stand-ins first)
#include "common/cuda/gpu_ops_kernels.cuh"

#include <gtest/gtest.h>

#include "tests/gpu_ops_cases.h"

namespace moe {
namespace {

using gpu::kernels::kThreads;

__nv_bfloat16* AsBf16(std::vector<uint16_t>& v) {
  return reinterpret_cast<__nv_bfloat16*>(v.data());
}

TEST(SimtOps, RmsNormEmbedSiluMatchCpu) {
  const testing::RmsNormCase norm;
  std::vector<float> y(norm.want.size(), -1.0f);
  simt::Launch(dim3(norm.T), dim3(kThreads), gpu::kernels::RmsNormKernel, norm.x.data(),
               norm.w.data(), norm.eps, norm.D, y.data());
  norm.Check(y);

  const testing::EmbedCase embed;
  std::vector<float> x(size_t{embed.T} * embed.D, -1.0f);
  simt::Launch(dim3(embed.T), dim3(kThreads), gpu::kernels::EmbedKernel, embed.ids.data(),
               embed.table.data(), embed.D, x.data());
  embed.Check(x);

  // Fewer threads than values: each thread takes several, grid-stride.
  const testing::SiluMulCase silu;
  std::vector<uint16_t> act(size_t{silu.rows} * silu.F);
  simt::Launch(dim3(2), dim3(kThreads), gpu::kernels::SiluMulToBf16Kernel, silu.gate_up.data(),
               int64_t{silu.rows}, silu.F, AsBf16(act));
  silu.Check(act);
}

TEST(SimtOps, RopeRouterArgmaxMatchCpu) {
  const testing::RopeCase rope;
  std::vector<float> x = rope.x;
  simt::Launch(dim3(rope.T), dim3(kThreads), gpu::kernels::RopeKernel, x.data(), rope.pos.data(),
               rope.inv_freq.data(), rope.heads, rope.hd);
  rope.Check(x);

  const testing::RouteCase route;
  std::vector<int32_t> ids(route.R * route.K, -1);
  std::vector<float> weights(route.R * route.K);
  simt::Launch(dim3((route.R + 127) / 128), dim3(128), gpu::kernels::RouteKernel,
               route.logits.data(), route.R, route.E, route.K, ids.data(), weights.data());
  route.Check(ids, weights);

  const testing::ArgmaxCase argmax;
  std::vector<int32_t> best(argmax.R, -1);
  simt::Launch(dim3(argmax.R), dim3(kThreads), gpu::kernels::ArgmaxKernel, argmax.logits.data(),
               argmax.V, best.data());
  argmax.Check(best);
}

TEST(SimtOps, RouterLogitsAndBf16RoundingMatchCpu) {
  const testing::RouterLogitsCase router;
  std::vector<float> logits(router.want.size(), -1.0f);
  const int threads = router.T * router.E * 32;
  simt::Launch(dim3((threads + kThreads - 1) / kThreads), dim3(kThreads),
               gpu::kernels::RouterLogitsKernel, router.h.data(), router.w.data(), router.T,
               router.E, router.D, logits.data());
  router.Check(logits);

  // Here the rounding is the host's own (the stand-in for __float2bfloat16_rn): this checks the
  // kernel's indexing; the device test checks CUDA's rounding.
  const testing::Bf16RoundingCase rounding;
  std::vector<uint16_t> y(rounding.n);
  simt::Launch(dim3((rounding.n + kThreads - 1) / kThreads), dim3(kThreads),
               gpu::kernels::ToBf16Kernel, rounding.x.data(), int64_t{rounding.n}, AsBf16(y));
  rounding.Check(y);
}

TEST(SimtOps, GatherBf16RowsCopiesThem) {
  testing::GatherBf16Case gather;
  const int n = static_cast<int>(gather.index.size());
  std::vector<uint16_t> picked(size_t{gather.D} * n);
  simt::Launch(dim3(n), dim3(kThreads), gpu::kernels::GatherRowsKernel<__nv_bfloat16, __nv_bfloat16>,
               static_cast<const __nv_bfloat16*>(AsBf16(gather.rows)), gather.index.data(),
               gather.D, AsBf16(picked));
  gather.Check(picked);
}

}  // namespace
}  // namespace moe
