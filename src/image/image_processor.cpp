#include "image/image_processor.h"

#include <cmath>

#include "core/error.h"

namespace zimage {

Tensor preprocess_image(const Image& img) {
  const Image rgb = to_rgb(img);
  const int64_t H = rgb.height, W = rgb.width;
  Tensor t = Tensor::empty(DType::F32, {1, 3, H, W});
  float* d = t.f32();
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t i = 0; i < H * W; ++i) {
      const float x = float(rgb.pixels[size_t(i * 3 + c)]) / 255.0f;  // numpy float32 division
      d[c * H * W + i] = 2.0f * x - 1.0f;                             // torch: 2.0 * images - 1.0
    }
  return t;
}

Tensor preprocess_mask(const Image& img) {
  const Image g = to_gray(img);
  const int64_t H = g.height, W = g.width;
  Tensor t = Tensor::empty(DType::F32, {1, 1, H, W});
  for (int64_t i = 0; i < H * W; ++i) {
    const float x = float(g.pixels[size_t(i)]) / 255.0f;
    t.f32()[i] = x < 0.5f ? 0.0f : 1.0f;
  }
  return t;
}

Tensor interpolate_nearest(const Tensor& x, int64_t h, int64_t w) {
  if (x.ndim() != 4 || h < 1 || w < 1) fail("[image] interpolate_nearest: bad shape");
  const int64_t B = x.dim(0) * x.dim(1), H = x.dim(2), W = x.dim(3);
  // aten nearest_idx: identity at equal size, x2 downscale by shifting, else floor(i * (float)in / out).
  auto idx = [](int64_t o, int64_t in, int64_t out) -> int64_t {
    if (in == out) return o;
    if (out * 2 == in) return o << 1;
    const float scale = float(in) / float(out);
    return std::min(int64_t(std::floor(float(o) * scale)), in - 1);
  };
  Tensor xf = x.to(DType::F32);
  Tensor out = Tensor::empty(DType::F32, {x.dim(0), x.dim(1), h, w});
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < h; ++i)
      for (int64_t j = 0; j < w; ++j)
        out.f32()[(b * h + i) * w + j] = xf.f32()[(b * H + idx(i, H, h)) * W + idx(j, W, w)];
  return out;
}

}  // namespace zimage
