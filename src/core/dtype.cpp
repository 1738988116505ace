#include "core/dtype.h"

#include <cmath>

#include "core/error.h"

namespace zimage {

size_t dtype_size(DType t) { return t == DType::F32 ? 4 : 2; }

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "float32";
    case DType::BF16:
      return "bfloat16";
    case DType::F16:
      return "float16";
  }
  return "?";
}

DType parse_dtype(const std::string& s) {
  if (s == "float32" || s == "fp32" || s == "f32" || s == "float") return DType::F32;
  if (s == "bfloat16" || s == "bf16") return DType::BF16;
  if (s == "float16" || s == "fp16" || s == "f16" || s == "half") return DType::F16;
  fail("dtype: unknown dtype '", s, "' (expected bf16, fp16 or fp32)");
}

// IEEE half conversions with round-to-nearest-even (same results as c10::Half).
float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  if (exp == 0) {
    if (man == 0) return f32_from_bits(sign);
    float v = std::ldexp(float(man), -24);
    return sign ? -v : v;
  }
  if (exp == 31) return f32_from_bits(sign | 0x7f800000u | (man << 13));
  return f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t f32_to_f16(float f) {
  uint32_t u = f32_bits(f);
  uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7e00u;   // NaN
  if (a >= 0x477ff000u) return sign | 0x7c00u;  // overflow to inf (>= 65520)
  if (a < 0x38800000u) {                        // subnormal or zero in half
    // value * 2^24 rounded to nearest even integer
    float v = f32_from_bits(a);
    float s = v * 16777216.0f;  // exact: power of two scaling
    float r = std::nearbyint(s);
    return sign | uint16_t(r);
  }
  uint32_t exp = (a >> 23) - 112;
  uint32_t man = a & 0x7fffffu;
  uint32_t half = (exp << 10) | (man >> 13);
  uint32_t rem = man & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) half++;
  return sign | uint16_t(half);
}

void convert(const void* src, DType st, void* dst, DType dt, size_t n) {
  if (st == dt) {
    std::memcpy(dst, src, n * dtype_size(st));
    return;
  }
  // via f32
  if (st == DType::F32) {
    const float* s = static_cast<const float*>(src);
    uint16_t* d = static_cast<uint16_t*>(dst);
    if (dt == DType::BF16)
      for (size_t i = 0; i < n; ++i) d[i] = f32_to_bf16(s[i]);
    else
      for (size_t i = 0; i < n; ++i) d[i] = f32_to_f16(s[i]);
    return;
  }
  const uint16_t* s = static_cast<const uint16_t*>(src);
  if (dt == DType::F32) {
    float* d = static_cast<float*>(dst);
    if (st == DType::BF16)
      for (size_t i = 0; i < n; ++i) d[i] = bf16_to_f32(s[i]);
    else
      for (size_t i = 0; i < n; ++i) d[i] = f16_to_f32(s[i]);
    return;
  }
  uint16_t* d = static_cast<uint16_t*>(dst);
  if (st == DType::BF16)
    for (size_t i = 0; i < n; ++i) d[i] = f32_to_f16(bf16_to_f32(s[i]));
  else
    for (size_t i = 0; i < n; ++i) d[i] = f32_to_bf16(f16_to_f32(s[i]));
}

}  // namespace zimage
