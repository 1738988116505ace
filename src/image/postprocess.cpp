#include "image/postprocess.h"

#include <climits>
#include <cmath>

namespace zimage {

namespace {

// The value a tensor of dtype `dt` holds after an op whose float32 result is `v`.
inline float round_to(DType dt, float v) {
  switch (dt) {
    case DType::F32:
      return v;
    case DType::BF16:
      return round_bf16(v);
    case DType::F16:
      return f16_to_f32(f32_to_f16(v));
  }
  return v;
}

inline float load(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::F32:
      return t.data<float>()[i];
    case DType::BF16:
      return bf16_to_f32(t.data<uint16_t>()[i]);
    case DType::F16:
      return f16_to_f32(t.data<uint16_t>()[i]);
  }
  return 0.f;
}

// (x * 0.5 + 0.5).clamp(0, 1) in dtype dt. x * 0.5 is exact (barring subnormals, which the
// following + 0.5 absorbs), so a contracted fma gives the same result as two roundings.
inline float denorm(DType dt, float x) {
  float h = round_to(dt, x * 0.5f);
  float y = round_to(dt, h + 0.5f);
  if (std::isnan(y)) return y;  // torch.clamp propagates NaN
  return y < 0.f ? 0.f : (y > 1.f ? 1.f : y);
}

void check_channels(int64_t c, const Shape& s, const char* what) {
  if (c != 1 && c != 3 && c != 4)
    fail("[image] ", what, ": ", c, " channels in ", shape_str(s), "; expected 1, 3 or 4");
}

}  // namespace

uint8_t to_uint8(float v) {
  float s = v * 255.0f;  // float32 * 255 -> float32, as numpy
  if (std::isnan(s)) return 0;
  float r = std::nearbyint(s);  // round half to even (default rounding mode)
  if (r <= 0.f) return 0;
  if (r >= 255.f) return 255;
  return uint8_t(r);
}

Tensor postprocess_float(const Tensor& decoded, bool denormalize) {
  const Shape& s = decoded.shape();
  if (decoded.ndim() != 4)
    fail("[image] postprocess: decoded image has shape ", shape_str(s), "; expected [B, C, H, W]");
  const int64_t B = s[0], C = s[1], H = s[2], W = s[3];
  check_channels(C, s, "postprocess");
  if (H <= 0 || W <= 0) fail("[image] postprocess: empty image ", shape_str(s));
  const DType dt = decoded.dtype();
  Tensor out = Tensor::empty(DType::F32, {B, H, W, C});  // [B, H, W, C]
  float* o = out.f32();
  const int64_t plane = H * W;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t c = 0; c < C; ++c) {
        const int64_t src = (b * C + c) * plane + y * W;  // decoded[b, c, y, :]
        float* dst = o + ((b * H + y) * W) * C + c;       // out[b, y, :, c]
        for (int64_t x = 0; x < W; ++x) {
          float v = load(decoded, src + x);
          dst[x * C] = denormalize ? denorm(dt, v) : v;  // .float() of the dtype value: exact
        }
      }
  return out;
}

std::vector<Image> float_to_images(const Tensor& nhwc) {
  const Shape& s = nhwc.shape();
  if (nhwc.ndim() != 4 || nhwc.dtype() != DType::F32)
    fail("[image] numpy_to_pil: expected a float32 [B, H, W, C] array, got ", dtype_name(nhwc.dtype()), " ",
         shape_str(s));
  const int64_t B = s[0], H = s[1], W = s[2], C = s[3];
  check_channels(C, s, "numpy_to_pil");
  if (H > INT32_MAX || W > INT32_MAX) fail("[image] numpy_to_pil: image too large ", shape_str(s));
  std::vector<Image> images(static_cast<size_t>(B));
  const float* in = nhwc.f32();
  const int64_t per = H * W * C;
  for (int64_t b = 0; b < B; ++b) {
    Image& im = images[size_t(b)];
    im.width = int(W);
    im.height = int(H);
    im.channels = int(C);
    im.pixels.resize(size_t(per));
    const float* src = in + b * per;
    uint8_t* dst = im.pixels.data();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < per; ++i) dst[i] = to_uint8(src[i]);
  }
  return images;
}

std::vector<Image> postprocess(const Tensor& decoded, bool denormalize) {
  Tensor f = postprocess_float(decoded, denormalize);
  if (!denormalize) {
    // Without denormalize numpy's (x * 255).round().astype(uint8) wraps values outside [0, 1];
    // we only produce images from values in range.
    const float* p = f.f32();
    for (int64_t i = 0; i < f.numel(); ++i)
      if (p[i] < 0.f || p[i] > 1.f) fail("[image] postprocess: value ", p[i], " outside [0, 1] with denormalize off");
  }
  return float_to_images(f);
}

}  // namespace zimage
