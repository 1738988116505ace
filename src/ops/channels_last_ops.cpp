// Group norm (+SiLU), nearest 2x upsample and residual add on channels-last activations
// (ops/channels_last.h). The per-pixel-row loops are the kernel table's (backend/cpu/cpu_level.h:
// AVX-512 vectors of 16 channels, or plain loops); the work split and the statistics are here.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/cpu_level.h"
#include "ops/channels_last.h"

namespace zimage::ops {
namespace {

void check_cl(const Tensor& x, const char* op) {
  if (x.ndim() != 4 || (x.dtype() != DType::F32 && x.dtype() != DType::BF16))
    fail("[", op, "] input must be a float32 or bfloat16 channels-last [B, H, W, C] tensor, got ",
         dtype_name(x.dtype()), " ", shape_str(x.shape()));
}

// Pixel ranges: B images x chunks of HW pixels, enough items to keep every thread busy. The
// chunks of an image do not depend on the batch size B: the statistics sum float partial sums per
// chunk, so an image's statistics (and its decoded pixels) are the same alone or in a batch.
struct Split {
  int64_t chunks, step;
};
Split split(int64_t /*B*/, int64_t HW) {
  const int64_t threads = omp_get_max_threads();
  int64_t chunks = std::max<int64_t>(1, 8 * threads);
  chunks = std::min(chunks, std::max<int64_t>(1, HW / 64));
  return {chunks, (HW + chunks - 1) / chunks};
}

inline float to_float(float v) { return v; }
inline float to_float(uint16_t v) { return bf16_to_f32(v); }

// The table's row kernels for T (float or bf16 bits).
void channel_sums(const cpu::Kernels& k, const float* x, int64_t C, const float* shift, int64_t p0, int64_t p1,
                  double* s1, double* s2) {
  k.cl_sums_f32(x, C, shift, p0, p1, s1, s2);
}
void channel_sums(const cpu::Kernels& k, const uint16_t* x, int64_t C, const float* shift, int64_t p0, int64_t p1,
                  double* s1, double* s2) {
  k.cl_sums_bf16(x, C, shift, p0, p1, s1, s2);
}
void apply(const cpu::Kernels& k, const float* x, float* y, int64_t C, const float* a, const float* sh, int64_t p0,
           int64_t p1, bool silu) {
  k.cl_apply_f32(x, y, C, a, sh, p0, p1, silu);
}
void apply(const cpu::Kernels& k, const uint16_t* x, uint16_t* y, int64_t C, const float* a, const float* sh,
           int64_t p0, int64_t p1, bool silu) {
  k.cl_apply_bf16(x, y, C, a, sh, p0, p1, silu);
}

// Statistics of the pixels of window `win` (rows [y0, y1), columns [x0, x1)) of [B, H, W, C] x.
template <class T>
GroupNormStats group_stats_impl(const T* x, int64_t B, int64_t H, int64_t W, int64_t C, int64_t groups,
                                const PixelWindow& win) {
  const int64_t cpg = C / groups, HW = H * W;
  const int64_t rows = win.y1 - win.y0, cols = win.x1 - win.x0, npx = rows * cols;
  // A full-width window is one contiguous pixel range: split it as a whole image; otherwise one
  // item per (image, row chunk).
  const bool contiguous = cols == W;
  const Split sp = contiguous ? split(B, npx) : split(B, rows);
  const int64_t items = B * sp.chunks;
  // Sums of (x - shift) with each channel shifted by the window's first value keep the variance accurate.
  std::vector<float> shift(size_t(B * C));
  for (int64_t n = 0; n < B; ++n)
    for (int64_t c = 0; c < C; ++c) shift[size_t(n * C + c)] = to_float(x[(n * HW + win.y0 * W + win.x0) * C + c]);
  std::vector<double> s1(size_t(items * C)), s2(s1.size());
  const cpu::Kernels& kt = cpu::kernels();
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t it = 0; it < items; ++it) {
    const int64_t n = it / sp.chunks, q0 = (it % sp.chunks) * sp.step;
    const T* img = x + n * HW * C;
    double* a1 = &s1[size_t(it * C)];
    double* a2 = &s2[size_t(it * C)];
    std::fill_n(a1, C, 0.0);
    std::fill_n(a2, C, 0.0);
    if (contiguous) {
      const int64_t base = win.y0 * W, p1 = std::min(npx, q0 + sp.step);
      channel_sums(kt, img, C, &shift[size_t(n * C)], base + std::min(q0, p1), base + p1, a1, a2);
    } else {
      for (int64_t r = q0; r < std::min(rows, q0 + sp.step); ++r) {
        const int64_t p0 = (win.y0 + r) * W + win.x0;
        channel_sums(kt, img, C, &shift[size_t(n * C)], p0, p0 + cols, a1, a2);
      }
    }
  }
  // Per channel S1 = sum(x - s), S2 = sum((x - s)^2); per group the mean, then
  // M2 = sum((x - mean)^2) = sum_c S2 + 2 (s - mean) S1 + n (s - mean)^2.
  GroupNormStats st;
  st.batch = B;
  st.groups = groups;
  st.count.assign(size_t(B * groups), double(cpg) * double(npx));
  st.mean.resize(size_t(B * groups));
  st.m2.resize(size_t(B * groups));
  std::vector<double> c1(static_cast<size_t>(C)), c2(static_cast<size_t>(C));
  for (int64_t n = 0; n < B; ++n) {
    std::fill(c1.begin(), c1.end(), 0.0);
    std::fill(c2.begin(), c2.end(), 0.0);
    for (int64_t ch = 0; ch < sp.chunks; ++ch)
      for (int64_t c = 0; c < C; ++c) {
        c1[size_t(c)] += s1[size_t((n * sp.chunks + ch) * C + c)];
        c2[size_t(c)] += s2[size_t((n * sp.chunks + ch) * C + c)];
      }
    const float* sh = &shift[size_t(n * C)];
    for (int64_t g = 0; g < groups; ++g) {
      double sum = 0;
      for (int64_t c = g * cpg; c < (g + 1) * cpg; ++c) sum += c1[size_t(c)] + double(npx) * sh[c];
      const double mean = sum / st.count[size_t(n * groups + g)];
      double m2 = 0;
      for (int64_t c = g * cpg; c < (g + 1) * cpg; ++c) {
        const double d = double(sh[c]) - mean;
        m2 += c2[size_t(c)] + 2.0 * d * c1[size_t(c)] + double(npx) * d * d;
      }
      st.mean[size_t(n * groups + g)] = mean;
      st.m2[size_t(n * groups + g)] = m2;
    }
  }
  return st;
}

template <class T>
void group_norm_apply_impl(const T* x, T* y, int64_t B, int64_t HW, int64_t C, const GroupNormStats& st, const float* w,
                           const float* b, float eps, bool silu) {
  const int64_t groups = st.groups, cpg = C / groups;
  std::vector<float> scale(size_t(B * C)), offset(size_t(B * C));
  for (int64_t n = 0; n < B; ++n)
    for (int64_t g = 0; g < groups; ++g) {
      const size_t k = size_t(n * groups + g);
      const double var = std::max(0.0, st.m2[k] / st.count[k]);
      const float rstd = float(1.0 / std::sqrt(var + double(eps))), mu = float(st.mean[k]);
      for (int64_t c = g * cpg; c < (g + 1) * cpg; ++c) {
        const float a = rstd * w[c];
        scale[size_t(n * C + c)] = a;
        offset[size_t(n * C + c)] = b[c] - mu * a;
      }
    }
  const Split sp = split(B, HW);
  const int64_t items = B * sp.chunks;
  const cpu::Kernels& kt = cpu::kernels();
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t it = 0; it < items; ++it) {
    const int64_t n = it / sp.chunks, p0 = (it % sp.chunks) * sp.step, p1 = std::min(HW, p0 + sp.step);
    if (p0 < p1)
      apply(kt, x + n * HW * C, y + n * HW * C, C, &scale[size_t(n * C)], &offset[size_t(n * C)], p0, p1, silu);
  }
}

void check_groups(const Tensor& x, int64_t groups) {
  check_cl(x, "group_norm");
  const int64_t C = x.dim(3);
  if (groups <= 0 || C % groups != 0) fail("[group_norm] ", C, " channels are not divisible by ", groups, " groups");
}

// Input, affine parameters and output of a group norm into y.
void check_group_norm(const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias, const Tensor& y) {
  check_groups(x, groups);
  const int64_t C = x.dim(3);
  if (weight.numel() != C || bias.numel() != C)
    fail("[group_norm] affine parameters (", weight.numel(), ", ", bias.numel(), ") do not match ", C, " channels");
  if (y.shape() != x.shape() || y.dtype() != x.dtype())
    fail("[group_norm] output ", dtype_name(y.dtype()), " ", shape_str(y.shape()), " does not match the input ",
         dtype_name(x.dtype()), " ", shape_str(x.shape()));
}

}  // namespace

void GroupNormStats::merge(const GroupNormStats& o) {
  if (count.empty()) {
    *this = o;
    return;
  }
  if (o.batch != batch || o.groups != groups)
    fail("[group_norm] cannot merge statistics of ", o.batch, " images x ", o.groups, " groups into ", batch,
         " images x ", groups, " groups");
  for (size_t k = 0; k < count.size(); ++k) {  // Chan, Golub and LeVeque's pairwise update
    const double na = count[k], nb = o.count[k], n = na + nb;
    if (nb == 0) continue;
    const double d = o.mean[k] - mean[k];
    mean[k] += d * nb / n;
    m2[k] += o.m2[k] + d * d * na * nb / n;
    count[k] = n;
  }
}

GroupNormStats group_norm_stats_channels_last(const Tensor& x, int64_t groups, const PixelWindow* window) {
  check_groups(x, groups);
  const int64_t B = x.dim(0), H = x.dim(1), W = x.dim(2), C = x.dim(3);
  const PixelWindow win = window ? *window : PixelWindow{0, H, 0, W};
  if (!(0 <= win.y0 && win.y0 < win.y1 && win.y1 <= H && 0 <= win.x0 && win.x0 < win.x1 && win.x1 <= W))
    fail("[group_norm] statistics window rows [", win.y0, ", ", win.y1, ") x columns [", win.x0, ", ", win.x1,
         ") is empty or outside the ", H, "x", W, " activation");
  if (x.dtype() == DType::F32) return group_stats_impl(x.f32(), B, H, W, C, groups, win);
  return group_stats_impl(x.data<uint16_t>(), B, H, W, C, groups, win);
}

void group_norm_apply_channels_last_into(const Tensor& x, const GroupNormStats& stats, const Tensor& weight,
                                         const Tensor& bias, float eps, bool silu, Tensor& y) {
  check_group_norm(x, stats.groups, weight, bias, y);
  const int64_t B = x.dim(0), HW = x.dim(1) * x.dim(2), C = x.dim(3);
  if (stats.batch != B || stats.count.size() != size_t(B * stats.groups))
    fail("[group_norm] statistics of ", stats.batch, " images do not match a batch of ", B);
  const std::vector<float> w = weight.to_vector(), b = bias.to_vector();
  if (y.numel() == 0) return;
  if (x.dtype() == DType::F32)
    group_norm_apply_impl(x.f32(), y.f32(), B, HW, C, stats, w.data(), b.data(), eps, silu);
  else
    group_norm_apply_impl(x.data<uint16_t>(), y.data<uint16_t>(), B, HW, C, stats, w.data(), b.data(), eps, silu);
}

Tensor group_norm_channels_last(const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias, float eps,
                                bool silu) {
  check_cl(x, "group_norm");
  Tensor y = Tensor::empty(x.dtype(), x.shape());
  group_norm_channels_last_into(x, groups, weight, bias, eps, silu, y);
  return y;
}

void group_norm_channels_last_into(const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias, float eps,
                                   bool silu, Tensor& y) {
  check_group_norm(x, groups, weight, bias, y);
  if (y.numel() == 0) return;
  group_norm_apply_channels_last_into(x, group_norm_stats_channels_last(x, groups), weight, bias, eps, silu, y);
}

Tensor upsample_nearest2x_channels_last(const Tensor& x) {
  check_cl(x, "upsample");
  const int64_t B = x.dim(0), H = x.dim(1), W = x.dim(2), C = x.dim(3);
  const size_t px = size_t(C) * dtype_size(x.dtype());        // bytes of one pixel
  Tensor y = Tensor::empty(x.dtype(), {B, 2 * H, 2 * W, C});  // [B, 2H, 2W, C]
  const char* xp = static_cast<const char*>(x.raw());
  char* yp = static_cast<char*>(y.raw());
#pragma omp parallel for schedule(static) collapse(2)
  for (int64_t n = 0; n < B; ++n)
    for (int64_t h = 0; h < H; ++h) {
      const char* src = xp + size_t((n * H + h) * W) * px;
      char* d0 = yp + size_t((n * 2 * H + 2 * h) * 2 * W) * px;
      for (int64_t w = 0; w < W; ++w) {
        std::memcpy(d0 + size_t(2 * w) * px, src + size_t(w) * px, px);
        std::memcpy(d0 + size_t(2 * w + 1) * px, src + size_t(w) * px, px);
      }
      std::memcpy(d0 + size_t(2 * W) * px, d0, size_t(2 * W) * px);
    }
  return y;
}

void add_as_(Tensor& y, const Tensor& x) {
  if (x.shape() != y.shape() || x.dtype() != y.dtype() || (y.dtype() != DType::F32 && y.dtype() != DType::BF16))
    fail("[add] ", dtype_name(x.dtype()), " ", shape_str(x.shape()), " cannot be added to ", dtype_name(y.dtype()), " ",
         shape_str(y.shape()));
  const int64_t n = y.numel();
  if (y.dtype() == DType::F32) {
    float* yp = y.f32();
    const float* xp = x.f32();
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; ++i) yp[i] += xp[i];
    return;
  }
  uint16_t* yp = y.data<uint16_t>();
  const uint16_t* xp = x.data<uint16_t>();
  const int64_t blocks = (n + 1023) / 1024;
  const cpu::Kernels& kt = cpu::kernels();
#pragma omp parallel for schedule(static)
  for (int64_t bi = 0; bi < blocks; ++bi) {
    const int64_t i0 = bi * 1024, i1 = std::min(n, i0 + 1024);
    kt.add_bf16(yp + i0, xp + i0, i1 - i0);
  }
}

Tensor ScratchSlots::get(int slot, DType dt, const Shape& shape) {
  ZI_ASSERT(slot >= 0 && slot < 4, "scratch slot ", slot);
  const int64_t n = shape_numel(shape);
  Tensor& b = buf_[slot];
  if (!b.defined() || b.ndim() != 1 || b.dtype() != dt || b.numel() < n) {
    b = Tensor();  // free the old buffer first
    b = Tensor::empty(dt, {std::max<int64_t>(n, 1)});
  }
  return b.slice0(0, n).reshape(shape);
}

}  // namespace zimage::ops
