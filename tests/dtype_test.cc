#include "common/dtype.h"

#include <gtest/gtest.h>
#include <immintrin.h>

#include <cmath>
#include <cstring>

namespace moe {
namespace {

__attribute__((target("f16c"))) float HardwareF16ToF32(uint16_t v) { return _cvtsh_ss(v); }

// Every half-precision bit pattern against the hardware conversion.
TEST(DType, F16ToF32MatchesHardwareForAllPatterns) {
  if (!__builtin_cpu_supports("f16c")) GTEST_SKIP() << "no F16C on this CPU";
  for (uint32_t i = 0; i < 65536; ++i) {
    const float ours = F16ToF32(static_cast<uint16_t>(i));
    const float hw = HardwareF16ToF32(static_cast<uint16_t>(i));
    if (std::isnan(hw)) {
      EXPECT_TRUE(std::isnan(ours)) << i;
    } else {
      ASSERT_EQ(std::memcmp(&ours, &hw, 4), 0) << "pattern " << i << ": " << ours << " vs " << hw;
    }
  }
}

TEST(DType, Bf16RoundTripsAndRoundsToNearestEven) {
  for (float f : {0.0f, 1.0f, -2.5f, 3.140625f, 0x1.fep100f, -0x1.8p-100f}) {
    EXPECT_EQ(Bf16ToF32(F32ToBf16(f)), f) << f;  // exactly representable in bf16
  }
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0).
  EXPECT_EQ(Bf16ToF32(F32ToBf16(1.0f + 1.0f / 256)), 1.0f);
  // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties to even (1 + 2^-6).
  EXPECT_EQ(Bf16ToF32(F32ToBf16(1.0f + 3.0f / 256)), 1.0f + 1.0f / 64);
  EXPECT_TRUE(std::isnan(Bf16ToF32(F32ToBf16(NAN))));
}

TEST(DType, ParseNames) {
  DType d;
  EXPECT_TRUE(ParseDType("BF16", &d));
  EXPECT_EQ(d, DType::kBF16);
  EXPECT_TRUE(ParseDType("F16", &d));
  EXPECT_EQ(d, DType::kF16);
  EXPECT_FALSE(ParseDType("I64", &d));
}

}  // namespace
}  // namespace moe
