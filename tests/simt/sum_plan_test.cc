// gpu::ApplySumPlan's kernel (common/cuda/sum_plan_kernel.cuh) run on the host by
// tests/simt/simt_host.h: bit-equal to moe::ApplySumPlan, which the CPU's combine uses.
#include "tests/simt/simt_host.h"
// (the stand-ins first)
#include "common/cuda/sum_plan_kernel.cuh"

#include <gtest/gtest.h>

#include "common/sum_plan.h"
#include "tests/test_util.h"

namespace moe {
namespace {

TEST(SimtSumPlan, KernelIsBitEqualToTheHost) {
  const int D = 70, V = 11;  // D not a multiple of the block: threads take several columns
  const std::vector<float> v = testing::Random(int64_t{V} * D, 9);
  const SumPlan plan = testing::RandomSumPlan(7, V, D, 4);
  std::vector<float> want(int64_t{plan.outputs()} * D), got(want.size(), -1.0f);
  ApplySumPlan(plan, v.data(), D, want.data());
  auto run = [&](bool accumulate, std::vector<float>* out) {
    simt::Launch(dim3(plan.outputs()), dim3(32), gpu::kernels::ApplySumPlanKernel,
                 static_cast<const int32_t*>(plan.term_begin.data()),
                 static_cast<const int32_t*>(plan.source_begin.data()),
                 static_cast<const int64_t*>(plan.source.data()),
                 static_cast<const float*>(plan.weight.data()), v.data(), D, accumulate,
                 out->data());
  };
  run(false, &got);
  EXPECT_TRUE(testing::BitEqual(got, want));

  // accumulate: x += each output's sum, one more rounded addition.
  std::vector<float> x = testing::Random(want.size(), 10), x_want(x.size());
  for (size_t i = 0; i < x.size(); ++i) x_want[i] = x[i] + want[i];
  run(true, &x);
  EXPECT_TRUE(testing::BitEqual(x, x_want));
}

}  // namespace
}  // namespace moe
