// Dequantisation of ggml block types, bit-identical to gguf-py's gguf/quants.py (its numpy
// dequantize_blocks): the same float32 products and differences in the same order, one rounding
// per operation (this file is compiled with -ffp-contract=off: no fused multiply-add).
#include <cstring>

#include "core/dtype.h"
#include "core/gguf.h"

namespace zimage::gguf {

namespace {

constexpr int QK_K = 256;

float f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

void q4_0(const uint8_t* b, float* y) {  // d f16, qs[16]
  const float d = f16(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * float(int(qs[j] & 0x0F) - 8);
    y[j + 16] = d * float(int(qs[j] >> 4) - 8);
  }
}

void q5_0(const uint8_t* b, float* y) {  // d f16, qh u32, qs[16]
  const float d = f16(b);
  uint32_t qh;
  std::memcpy(&qh, b + 2, 4);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < 32; ++j) {
    const int ql = j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4);
    const int h = int((qh >> j) & 1u);
    y[j] = d * float((ql | (h << 4)) - 16);
  }
}

void q8_0(const uint8_t* b, float* y) {  // d f16, qs int8[32]
  const float d = f16(b);
  for (int j = 0; j < 32; ++j) y[j] = float(int8_t(b[2 + j])) * d;
}

void q2_k(const uint8_t* b, float* y) {  // scales[16], qs[64], d, dmin
  const uint8_t* scales = b;
  const uint8_t* qs = b + 16;
  const float d = f16(b + 80), dmin = f16(b + 82);
  float dl[16], ml[16];
  for (int i = 0; i < 16; ++i) {
    dl[i] = d * float(scales[i] & 0xF);
    ml[i] = dmin * float(scales[i] >> 4);
  }
  for (int pos = 0; pos < QK_K; ++pos) {
    const int g = pos / 128, s = (pos % 128) / 32, l = pos % 32;
    const float q = float((qs[g * 32 + l] >> (2 * s)) & 3);
    y[pos] = dl[pos / 16] * q - ml[pos / 16];
  }
}

void q3_k(const uint8_t* b, float* y) {  // hmask[32], qs[64], scales[12], d
  const uint8_t* hmask = b;
  const uint8_t* qs = b + 32;
  const uint8_t* sc = b + 96;
  const float d = f16(b + 108);
  float dl[16];
  for (int k = 0; k < 16; ++k) {
    const int lo = (sc[k % 8] >> (4 * (k / 8))) & 0x0F;
    const int hi = (sc[8 + k % 4] >> (2 * (k / 4))) & 0x03;
    dl[k] = d * float(int8_t(uint8_t(lo | (hi << 4))) - 32);
  }
  for (int pos = 0; pos < QK_K; ++pos) {
    const int g = pos / 128, s = (pos % 128) / 32, l = pos % 32;
    const int ql = (qs[g * 32 + l] >> (2 * s)) & 3;
    const int qh = ((hmask[l] >> (pos / 32)) & 1) ^ 1;
    y[pos] = dl[pos / 16] * float(ql - (qh << 2));
  }
}

// Q4_K / Q5_K 6-bit scales and mins of the 8 sub-blocks.
void scale_min_k4(const uint8_t* s, uint8_t sc[8], uint8_t mn[8]) {
  for (int j = 0; j < 4; ++j) {
    sc[j] = s[j] & 0x3F;
    mn[j] = s[4 + j] & 0x3F;
    sc[4 + j] = uint8_t((s[8 + j] & 0x0F) | ((s[j] >> 2) & 0x30));
    mn[4 + j] = uint8_t((s[8 + j] >> 4) | ((s[4 + j] >> 2) & 0x30));
  }
}

void q4_k(const uint8_t* b, float* y) {  // d, dmin, scales[12], qs[128]
  const float d = f16(b), dmin = f16(b + 2);
  uint8_t sc[8], mn[8];
  scale_min_k4(b + 4, sc, mn);
  const uint8_t* qs = b + 16;
  for (int j = 0; j < 8; ++j) {
    const float dd = d * float(sc[j]), dm = dmin * float(mn[j]);
    const int g = j / 2, h = j % 2;
    for (int l = 0; l < 32; ++l) y[j * 32 + l] = dd * float((qs[g * 32 + l] >> (4 * h)) & 0x0F) - dm;
  }
}

void q5_k(const uint8_t* b, float* y) {  // d, dmin, scales[12], qh[32], qs[128]
  const float d = f16(b), dmin = f16(b + 2);
  uint8_t sc[8], mn[8];
  scale_min_k4(b + 4, sc, mn);
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + 48;
  for (int j = 0; j < 8; ++j) {
    const float dd = d * float(sc[j]), dm = dmin * float(mn[j]);
    const int g = j / 2, h = j % 2;
    for (int l = 0; l < 32; ++l) {
      const int q = ((qs[g * 32 + l] >> (4 * h)) & 0x0F) | (((qh[l] >> j) & 1) << 4);
      y[j * 32 + l] = dd * float(q) - dm;
    }
  }
}

void q6_k(const uint8_t* b, float* y) {  // ql[128], qh[64], scales int8[16], d
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = f16(b + 208);
  float ds[16];
  for (int i = 0; i < 16; ++i) ds[i] = d * float(sc[i]);
  for (int pos = 0; pos < QK_K; ++pos) {
    const int g = pos / 128, r = pos % 128;
    const int lo = (ql[g * 64 + r % 64] >> (4 * (r / 64))) & 0x0F;
    const int hi = (qh[g * 32 + r % 32] >> (2 * (r / 32))) & 0x03;
    y[pos] = ds[pos / 16] * float(int8_t(uint8_t(lo | (hi << 4))) - 32);
  }
}

}  // namespace

void dequantize_rows(uint32_t type, const void* src, float* dst, int64_t n) {
  const TypeTraits* tt = type_traits(type);
  if (!tt || !tt->dequantize) fail("gguf: cannot dequantize ", type_name(type));
  if (n < 0 || n % tt->block != 0) fail("gguf: ", n, " elements is not a whole number of ", tt->name, " blocks");
  const uint8_t* s = static_cast<const uint8_t*>(src);
  const int64_t nb = n / tt->block;
  void (*fn)(const uint8_t*, float*) = nullptr;
  switch (GgmlType(type)) {
    case GgmlType::F32:
      std::memcpy(dst, s, size_t(n) * 4);
      return;
    case GgmlType::F16:
      for (int64_t i = 0; i < n; ++i) dst[i] = f16(s + 2 * i);
      return;
    case GgmlType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, s + 2 * i, 2);
        dst[i] = bf16_to_f32(h);
      }
      return;
    case GgmlType::Q4_0:
      fn = q4_0;
      break;
    case GgmlType::Q5_0:
      fn = q5_0;
      break;
    case GgmlType::Q8_0:
      fn = q8_0;
      break;
    case GgmlType::Q2_K:
      fn = q2_k;
      break;
    case GgmlType::Q3_K:
      fn = q3_k;
      break;
    case GgmlType::Q4_K:
      fn = q4_k;
      break;
    case GgmlType::Q5_K:
      fn = q5_k;
      break;
    case GgmlType::Q6_K:
      fn = q6_k;
      break;
    default:
      fail("gguf: cannot dequantize ", tt->name);
  }
  for (int64_t i = 0; i < nb; ++i) fn(s + i * tt->bytes, dst + i * tt->block);
}

}  // namespace zimage::gguf
