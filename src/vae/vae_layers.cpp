#include "vae/vae_layers.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace zimage::vae {

// ---- Conv2d / GroupNorm / Linear ----

void Conv2d::load(const Loader& l, const std::string& prefix, int64_t in, int64_t out, int64_t k, int64_t s,
                  ops::Padding2d p) {
  weight = l.conv(prefix + ".weight", {out, in, k, k});
  bias = l.param(prefix + ".bias", {out});
  stride = s;
  pad = p;
  nhwc.init(weight, bias, s, p);
}

Tensor Conv2d::forward(const Tensor& x, ops::Precision p) const {
  Tensor y = ops::conv2d(x, weight, &bias, stride, pad);
  ops::store_(p, y);
  return y;
}

void GroupNorm::load(const Loader& l, const std::string& prefix, int64_t channels, int64_t g, float e) {
  weight = l.param(prefix + ".weight", {channels});
  bias = l.param(prefix + ".bias", {channels});
  groups = g;
  eps = e;
}

Tensor GroupNorm::forward(const Tensor& x, bool silu, ops::Precision p) const {
  return ops::group_norm(p, x, groups, weight, bias, eps, silu);
}

Tensor GroupNorm::forward_nhwc(const Tensor& x, bool silu) const {
  return ops::group_norm_channels_last(x, groups, weight, bias, eps, silu);
}

void GroupNorm::forward_nhwc_into(const Tensor& x, bool silu, Tensor& y, TileNorms* tile) const {
  if (!tile) return ops::group_norm_channels_last_into(x, groups, weight, bias, eps, silu, y);
  const size_t k = tile->next++;
  if (tile->mode == TileNorms::Mode::Fixed) {
    ZI_ASSERT(k < tile->stats.size(), "tiled decode: no statistics recorded for group norm ", k);
    return ops::group_norm_apply_channels_last_into(x, tile->stats[k], weight, bias, eps, silu, y);
  }
  const int64_t f = x.dim(1) / tile->tile_h;  // this activation's resolution over the latent's
  ZI_ASSERT(f >= 1 && x.dim(1) == f * tile->tile_h && x.dim(2) == f * tile->tile_w, "tiled decode: activation ",
            shape_str(x.shape()), " is not a multiple of the ", tile->tile_h, "x", tile->tile_w, " latent tile");
  const ops::PixelWindow w{tile->keep.y0 * f, tile->keep.y1 * f, tile->keep.x0 * f, tile->keep.x1 * f};
  if (tile->stats.size() <= k) tile->stats.resize(k + 1);
  tile->stats[k].merge(ops::group_norm_stats_channels_last(x, groups, &w));
  ops::group_norm_channels_last_into(x, groups, weight, bias, eps, silu, y);
}

void Linear::load(const Loader& l, const std::string& prefix, int64_t in, int64_t out) {
  weight = l.linear(prefix + ".weight", out, in);
  bias = l.param(prefix + ".bias", {out});
}

Tensor Linear::forward(const Tensor& x, ops::Precision p) const {
  Tensor y = ops::linear(x, weight, &bias);
  ops::store_(p, y);
  return y;
}

Tensor Linear::forward_matmul_add(const Tensor& x, ops::Precision p) const {
  Tensor y = ops::linear(x, weight);
  ops::store_(p, y);
  const int64_t N = weight.dim(0), rows = y.numel() / N;
  float* yp = y.f32();
  const float* bp = bias.f32();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t n = 0; n < N; ++n) yp[r * N + n] += bp[n];
  ops::store_(p, y);
  return y;
}

// ---- ResnetBlock2D ----

void ResnetBlock2D::load(const Loader& l, const std::string& p, int64_t in, int64_t out, int64_t groups, float eps) {
  norm1.load(l, p + ".norm1", in, groups, eps);
  conv1.load(l, p + ".conv1", in, out, 3, 1, ops::Padding2d::same(1));
  norm2.load(l, p + ".norm2", out, groups, eps);
  conv2.load(l, p + ".conv2", out, out, 3, 1, ops::Padding2d::same(1));
  has_shortcut = in != out;  // use_in_shortcut
  if (has_shortcut) conv_shortcut.load(l, p + ".conv_shortcut", in, out, 1, 1, {});
}

Tensor ResnetBlock2D::forward(const Tensor& x, ops::Precision p) const {
  Tensor h = norm1.forward(x, /*silu=*/true, p);
  h = conv1.forward(h, p);
  h = norm2.forward(h, /*silu=*/true, p);
  h = conv2.forward(h, p);  // dropout is the identity in eval
  Tensor out = has_shortcut ? conv_shortcut.forward(x, p) : x.clone();
  ops::add_(out, h);  // (input_tensor + hidden_states) / output_scale_factor (1.0)
  ops::store_(p, out);
  return out;
}

Tensor ResnetBlock2D::forward_nhwc(Tensor x, ops::ScratchSlots& scratch, TileNorms* tile) const {
  const DType dt = x.dtype();
  const Shape out_shape{x.dim(0), x.dim(1), x.dim(2), conv1.weight.dim(0)};  // [B, H, W, out]
  Tensor a = scratch.get(0, dt, x.shape());
  norm1.forward_nhwc_into(x, /*silu=*/true, a, tile);
  Tensor h = scratch.get(1, dt, out_shape);
  conv1.nhwc.forward_into(a, h);
  norm2.forward_nhwc_into(h, /*silu=*/true, h, tile);  // in place
  Tensor out = has_shortcut ? conv_shortcut.forward_nhwc(x) : std::move(x);
  conv2.nhwc.forward_residual(h, out, scratch, 0);  // out = shortcut + conv2(h)
  return out;
}

// ---- Mid-block attention ----

void MidAttention::load(const Loader& l, const std::string& p, int64_t c, int64_t groups, float eps) {
  channels = c;
  group_norm.load(l, p + ".group_norm", c, groups, eps);
  to_q.load(l, p + ".to_q", c, c);
  to_k.load(l, p + ".to_k", c, c);
  to_v.load(l, p + ".to_v", c, c);
  to_out.load(l, p + ".to_out.0", c, c);
}

namespace {

// [B, C, S] <-> [B, S, C]
Tensor transpose_last2(const Tensor& x, int64_t B, int64_t R, int64_t Cc) {
  Tensor y = Tensor::empty(DType::F32, {B, Cc, R});
  const float* xp = x.f32();
  float* yp = y.f32();
  constexpr int64_t T = 32;
#pragma omp parallel for collapse(3) schedule(static)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t r0 = 0; r0 < R; r0 += T)
      for (int64_t c0 = 0; c0 < Cc; c0 += T)
        for (int64_t r = r0; r < std::min(R, r0 + T); ++r)
          for (int64_t c = c0; c < std::min(Cc, c0 + T); ++c) yp[(b * Cc + c) * R + r] = xp[(b * R + r) * Cc + c];
  return y;
}

// softmax(q k^T * scale) v for one head, q/k/v [S, D] rows of one batch item, through GEMMs on
// blocks of queries (the score block is [rows, S], never [S, S] unless S is small). As torch's CPU
// flash attention: exp(s - max) in f32, their f32 sum, the exponentials (rounded to bf16 in a
// bf16 run) times v, divided by the sum at the end.
void attention_one_head(const Tensor& q, const Tensor& k, const Tensor& vt, float scale, float* out, ops::Precision p) {
  const int64_t S = q.dim(0), D = q.dim(1);
  const int64_t block = std::clamp<int64_t>((int64_t(16) << 20) / std::max<int64_t>(S, 1), 1, S);
  // A bf16 run holds q, k, v and the exponentials in bf16: the products take bf16 operands (the
  // same values; f32 accumulation) as torch's bf16 attention does.
  const Tensor kw = k.to(p.storage()), vw = vt.to(p.storage());
  std::vector<double> sums(static_cast<size_t>(block));
  for (int64_t r0 = 0; r0 < S; r0 += block) {
    const int64_t n = std::min(block, S - r0);
    Tensor scores = ops::linear(q.slice0(r0, r0 + n), kw);  // [n, S]
    float* sp = scores.f32();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      float* row = sp + i * S;
      float m = -INFINITY;
      for (int64_t j = 0; j < S; ++j) {
        row[j] *= scale;
        m = std::max(m, row[j]);
      }
      double sum = 0;
      for (int64_t j = 0; j < S; ++j) {
        row[j] = std::exp(row[j] - m);
        sum += row[j];
      }
      sums[size_t(i)] = sum;
    }
    ops::store_(p, scores);
    Tensor o = ops::linear(scores, vw);  // [n, D]
    const float* op = o.f32();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const float inv = float(1.0 / sums[size_t(i)]);
      for (int64_t d = 0; d < D; ++d) out[(r0 + i) * D + d] = op[i * D + d] * inv;
    }
  }
}

}  // namespace

Tensor MidAttention::forward(const Tensor& x, ops::Precision p) const {
  if (x.ndim() != 4 || x.dim(1) != channels)
    fail("[vae] attention input ", shape_str(x.shape()), " does not have ", channels, " channels");
  const int64_t B = x.dim(0), C = channels, S = x.dim(2) * x.dim(3);
  Tensor h = group_norm.forward(x, /*silu=*/false, p);  // [B, C, H, W]
  h = transpose_last2(h.reshape({B, C, S}), B, C, S);   // [B, S, C]
  // h is a transposed view in torch, so its linears run as matmul, then bias add.
  Tensor q = to_q.forward_matmul_add(h, p), k = to_k.forward_matmul_add(h, p),
         v = to_v.forward_matmul_add(h, p);            // [B, S, C]
  Tensor attn = Tensor::empty(DType::F32, {B, S, C});  // heads = 1, head_dim = C
  const float scale = 1.f / std::sqrt(float(C));
  for (int64_t b = 0; b < B; ++b) {
    Tensor qb = q.reshape({B * S, C}).slice0(b * S, (b + 1) * S);  // [S, C]
    Tensor kb = k.reshape({B * S, C}).slice0(b * S, (b + 1) * S);
    Tensor vt = transpose_last2(v.reshape({B * S, C}).slice0(b * S, (b + 1) * S), 1, S, C).reshape({C, S});  // [C, S]
    attention_one_head(qb, kb, vt, scale, attn.f32() + b * S * C, p);
  }
  ops::store_(p, attn);
  Tensor o = to_out.forward(attn, p);                         // [B, S, C]; to_out[1] is dropout
  Tensor y = transpose_last2(o, B, S, C).reshape(x.shape());  // [B, C, H, W]
  ops::add_(y, x);                                            // residual_connection; rescale_output_factor 1.0
  ops::store_(p, y);
  return y;
}

Tensor MidAttention::forward_nhwc(const Tensor& x) const {
  const ops::Precision p = ops::Precision::of(x.dtype(), "vae");  // the compute dtype's
  return ops::to_channels_last(forward(ops::from_channels_last(x), p), p.storage());
}

// ---- UNetMidBlock2D ----

void MidBlock2D::load(const Loader& l, const std::string& p, int64_t c, int64_t groups, bool add_attention) {
  resnets.resize(2);
  resnets[0].load(l, p + ".resnets.0", c, c, groups, 1e-6f);
  if (add_attention) {
    attentions.resize(1);
    attentions[0].load(l, p + ".attentions.0", c, groups, 1e-6f);
  }
  resnets[1].load(l, p + ".resnets.1", c, c, groups, 1e-6f);
}

Tensor MidBlock2D::forward_nhwc(Tensor x, ops::ScratchSlots& scratch) const {
  Tensor h = resnets[0].forward_nhwc(std::move(x), scratch);
  if (!attentions.empty()) h = attentions[0].forward_nhwc(h);
  return resnets[1].forward_nhwc(std::move(h), scratch);
}

Tensor MidBlock2D::forward(const Tensor& x, ops::Precision p) const {
  Tensor h = resnets[0].forward(x, p);
  if (!attentions.empty()) h = attentions[0].forward(h, p);
  return resnets[1].forward(h, p);
}

// ---- Up / down sampling ----

void Upsample2D::load(const Loader& l, const std::string& p, int64_t c) {
  conv.load(l, p + ".conv", c, c, 3, 1, ops::Padding2d::same(1));
}

Tensor Upsample2D::forward(const Tensor& x, ops::Precision p) const {
  return conv.forward(ops::upsample_nearest2x(x), p);
}

Tensor Upsample2D::forward_nhwc(const Tensor& x) const {
  return conv.forward_nhwc(ops::upsample_nearest2x_channels_last(x));
}

void Downsample2D::load(const Loader& l, const std::string& p, int64_t c) {
  conv.load(l, p + ".conv", c, c, 3, 2, ops::Padding2d{0, 1, 0, 1});  // pad = (0, 1, 0, 1), padding=0
}

Tensor Downsample2D::forward(const Tensor& x, ops::Precision p) const { return conv.forward(x, p); }

}  // namespace zimage::vae
