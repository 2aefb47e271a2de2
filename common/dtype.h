// Element types of checkpoint tensors, and exact widening of 16-bit floats to f32.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

namespace moe {

enum class DType { kF32, kF16, kBF16 };

inline int DTypeSize(DType d) { return d == DType::kF32 ? 4 : 2; }
const char* DTypeName(DType d);               // "F32", "F16", "BF16" (safetensors spelling)
bool ParseDType(const std::string& s, DType* out);

// bf16 is the top half of an f32: widening is a shift, exact.
inline float Bf16ToF32(uint16_t v) {
  uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round-to-nearest-even; NaN stays NaN.
inline uint16_t F32ToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

// IEEE half to f32, exact (subnormals, inf and NaN included).
float F16ToF32(uint16_t v);

}  // namespace moe
