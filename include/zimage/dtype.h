// Element types and bit-exact conversions (round-to-nearest-even, as torch does).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace zimage {

enum class DType : uint8_t { F32, BF16, F16 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);  // "float32", "bfloat16", "float16"
// Parses torch-style names: float32/fp32/f32, bfloat16/bf16, float16/fp16/f16/half.
DType parse_dtype(const std::string& s);

inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float f32_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline float bf16_to_f32(uint16_t h) { return f32_from_bits(uint32_t(h) << 16); }
inline uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;  // NaN, as c10::BFloat16
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
// Rounds a float to the nearest bf16 value and back (what a bf16 tensor would hold).
inline float round_bf16(float f) { return bf16_to_f32(f32_to_bf16(f)); }

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// Bulk conversions (vectorised where the compiler can).
void convert(const void* src, DType st, void* dst, DType dt, size_t n);

}  // namespace zimage
