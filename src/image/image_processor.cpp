#include "image/image_processor.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"

namespace zimage {

namespace {

double sinc(double x) {
  if (x == 0.0) return 1.0;
  x = x * M_PI;
  return std::sin(x) / x;
}
double lanczos(double x) { return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3) : 0.0; }

constexpr int kPrecisionBits = 32 - 8 - 2;

// Resample.c precompute_coeffs + normalize_coeffs_8bpc: per output pixel, the first input pixel,
// the count, and ksize fixed-point weights.
struct Coeffs {
  int ksize = 0;
  std::vector<int> bounds;  // xmin, xmax per output pixel
  std::vector<int32_t> k;
};
Coeffs precompute(int in_size, int out_size) {
  const float in0 = 0.f, in1 = float(in_size);
  double scale = double(in1 - in0) / out_size, filterscale = scale;
  if (filterscale < 1.0) filterscale = 1.0;
  const double support = 3.0 * filterscale;
  Coeffs c;
  c.ksize = int(std::ceil(support)) * 2 + 1;
  c.bounds.resize(size_t(out_size) * 2);
  c.k.assign(size_t(out_size) * size_t(c.ksize), 0);
  std::vector<double> kk(size_t(c.ksize));
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = in0 + (xx + 0.5) * scale;
    double ww = 0.0;
    const double ss = 1.0 / filterscale;
    int xmin = int(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = int(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    std::fill(kk.begin(), kk.end(), 0.0);
    for (int x = 0; x < xmax; ++x) {
      const double w = lanczos((x + xmin - center + 0.5) * ss);
      kk[size_t(x)] = w;
      ww += w;
    }
    for (int x = 0; x < xmax; ++x)
      if (ww != 0.0) kk[size_t(x)] /= ww;
    for (int x = 0; x < c.ksize; ++x) {
      const double v = kk[size_t(x)] * double(1 << kPrecisionBits);
      c.k[size_t(xx) * size_t(c.ksize) + size_t(x)] = kk[size_t(x)] < 0 ? int32_t(-0.5 + v) : int32_t(0.5 + v);
    }
    c.bounds[size_t(xx) * 2] = xmin;
    c.bounds[size_t(xx) * 2 + 1] = xmax;
  }
  return c;
}
inline uint8_t clip8(int32_t in) {
  if (in >= (1 << kPrecisionBits << 8)) return 255;
  if (in <= 0) return 0;
  return uint8_t(in >> kPrecisionBits);
}

}  // namespace

Image resize_lanczos(const Image& img, int width, int height) {
  if (img.width <= 0 || img.height <= 0 || img.channels < 1 || img.channels > 4 || width <= 0 || height <= 0 ||
      img.pixels.size() != size_t(img.width) * size_t(img.height) * size_t(img.channels))
    fail("[image] resize: invalid image or size (", img.width, "x", img.height, " -> ", width, "x", height, ")");
  if (img.width == width && img.height == height) return img;
  const int C = img.channels;
  const Coeffs h = precompute(img.width, width), v = precompute(img.height, height);
  const bool need_h = width != img.width, need_v = height != img.height;
  // Horizontal pass first, over the input rows the vertical pass reads.
  int y_first = 0, y_last = img.height;
  if (need_v) {
    y_first = v.bounds[0];
    y_last = v.bounds[size_t(height) * 2 - 2] + v.bounds[size_t(height) * 2 - 1];
  }
  Image tmp;
  if (need_h) {
    tmp.width = width;
    tmp.height = y_last - y_first;
    tmp.channels = C;
    tmp.pixels.resize(size_t(tmp.width) * size_t(tmp.height) * size_t(C));
    for (int yy = 0; yy < tmp.height; ++yy)
      for (int xx = 0; xx < width; ++xx) {
        const int xmin = h.bounds[size_t(xx) * 2], xmax = h.bounds[size_t(xx) * 2 + 1];
        const int32_t* k = &h.k[size_t(xx) * size_t(h.ksize)];
        for (int c = 0; c < C; ++c) {
          int32_t ss = 1 << (kPrecisionBits - 1);
          for (int x = 0; x < xmax; ++x)
            ss +=
                int32_t(
                    img.pixels[(size_t(yy + y_first) * size_t(img.width) + size_t(x + xmin)) * size_t(C) + size_t(c)]) *
                k[x];
          tmp.pixels[(size_t(yy) * size_t(width) + size_t(xx)) * size_t(C) + size_t(c)] = clip8(ss);
        }
      }
  } else {
    tmp = img;
    y_first = 0;
  }
  if (!need_v) return tmp;
  Image out;
  out.width = width;
  out.height = height;
  out.channels = C;
  out.pixels.resize(size_t(width) * size_t(height) * size_t(C));
  for (int yy = 0; yy < height; ++yy) {
    const int ymin = v.bounds[size_t(yy) * 2] - y_first, ymax = v.bounds[size_t(yy) * 2 + 1];
    const int32_t* k = &v.k[size_t(yy) * size_t(v.ksize)];
    for (int xx = 0; xx < width; ++xx)
      for (int c = 0; c < C; ++c) {
        int32_t ss = 1 << (kPrecisionBits - 1);
        for (int y = 0; y < ymax; ++y)
          ss += int32_t(tmp.pixels[(size_t(y + ymin) * size_t(width) + size_t(xx)) * size_t(C) + size_t(c)]) * k[y];
        out.pixels[(size_t(yy) * size_t(width) + size_t(xx)) * size_t(C) + size_t(c)] = clip8(ss);
      }
  }
  return out;
}

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
