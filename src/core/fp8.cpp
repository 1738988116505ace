#include "core/fp8.h"

#include <array>
#include <cstring>

namespace zimage::fp8 {

namespace {

// c10/util/Float8_e4m3fn.h, fp8e4m3fn_to_fp32_value, step by step (the zero code skips the
// count of leading zeros, which is undefined for 0; its result is masked to +-0 there anyway).
uint32_t e4m3_bits(uint8_t input) {
  const uint32_t w = uint32_t(input) << 24;
  const uint32_t sign = w & 0x80000000u;
  const uint32_t nonsign = w & 0x7FFFFFFFu;
  if (nonsign == 0) return sign;
  uint32_t renorm_shift = uint32_t(__builtin_clz(nonsign));
  renorm_shift = renorm_shift > 4 ? renorm_shift - 4 : 0;
  const int32_t inf_nan_mask = int32_t(int32_t(nonsign + 0x01000000u) >> 8) & int32_t(0x7F800000);
  const uint32_t result =
      sign | (((nonsign << renorm_shift >> 4) + ((0x78u - renorm_shift) << 23)) | uint32_t(inf_nan_mask));
  return result;
}

struct Table {
  std::array<float, 256> v;
  Table() {
    for (int c = 0; c < 256; ++c) {
      const uint32_t b = e4m3_bits(uint8_t(c));
      std::memcpy(&v[size_t(c)], &b, 4);
    }
  }
};
const Table& table() {
  static const Table t;
  return t;
}

}  // namespace

float e4m3_to_f32(uint8_t code) { return table().v[code]; }

void e4m3_to_f32(const uint8_t* src, float* dst, int64_t n, const float* scale) {
  const float* t = table().v.data();
  if (!scale) {
    for (int64_t i = 0; i < n; ++i) dst[i] = t[src[i]];
    return;
  }
  const float s = *scale;
  for (int64_t i = 0; i < n; ++i) dst[i] = t[src[i]] * s;
}

}  // namespace zimage::fp8
