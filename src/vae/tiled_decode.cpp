// AutoencoderKL.tiled_decode, streamed: diffusers decodes every tile, then blends each tile with
// the tile above (blend_v) and the tile to its left (blend_h) in place and concatenates the
// top-left row_limit x row_limit crops. Here tiles are decoded one at a time in the same order
// and written out at once, keeping only the previous row of decoded (already blended) tiles, so
// the working memory is one tile's decoder activations, not the image's.
#include <algorithm>
#include <vector>

#include "vae/autoencoder_kl.h"

namespace zimage {

namespace {

// b[:, :, y, :] = a[:, :, -e + y, :] * (1 - y / e) + b[:, :, y, :] * (y / e), e = min(a.H, b.H, extent)
void blend_v(const Tensor& a, Tensor& b, int64_t extent, DType storage) {
  const int64_t BC = b.dim(0) * b.dim(1), aH = a.dim(2), bH = b.dim(2), W = b.dim(3);
  const int64_t e = std::min({aH, bH, extent});
  ZI_ASSERT(a.dim(3) == W, "blend_v widths ", a.dim(3), " != ", W);
  const bool bf16 = storage == DType::BF16;
  for (int64_t y = 0; y < e; ++y) {
    const float wa = float(1.0 - double(y) / double(e)), wb = float(double(y) / double(e));
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < BC; ++p) {
      const float* ar = a.f32() + (p * aH + aH - e + y) * W;
      float* br = b.f32() + (p * bH + y) * W;
      for (int64_t x = 0; x < W; ++x) {
        float s = ar[x] * wa, t = br[x] * wb;
        if (bf16) s = round_bf16(s), t = round_bf16(t);
        br[x] = bf16 ? round_bf16(s + t) : s + t;
      }
    }
  }
}

// b[:, :, :, x] = a[:, :, :, -e + x] * (1 - x / e) + b[:, :, :, x] * (x / e), e = min(a.W, b.W, extent)
void blend_h(const Tensor& a, Tensor& b, int64_t extent, DType storage) {
  const int64_t BC = b.dim(0) * b.dim(1), H = b.dim(2), aW = a.dim(3), bW = b.dim(3);
  const int64_t e = std::min({aW, bW, extent});
  ZI_ASSERT(a.dim(2) == H, "blend_h heights ", a.dim(2), " != ", H);
  const bool bf16 = storage == DType::BF16;
#pragma omp parallel for schedule(static) collapse(2)
  for (int64_t p = 0; p < BC; ++p)
    for (int64_t y = 0; y < H; ++y) {
      const float* ar = a.f32() + (p * H + y) * aW;
      float* br = b.f32() + (p * H + y) * bW;
      for (int64_t x = 0; x < e; ++x) {
        const float wa = float(1.0 - double(x) / double(e)), wb = float(double(x) / double(e));
        float s = ar[aW - e + x] * wa, t = br[x] * wb;
        if (bf16) s = round_bf16(s), t = round_bf16(t);
        br[x] = bf16 ? round_bf16(s + t) : s + t;
      }
    }
}

// z[:, :, i:i+th, j:j+tw] copied out (latent tiles are small).
Tensor crop(const Tensor& z, int64_t i, int64_t j, int64_t th, int64_t tw) {
  const int64_t BC = z.dim(0) * z.dim(1), H = z.dim(2), W = z.dim(3);
  Tensor t = Tensor::empty(DType::F32, {z.dim(0), z.dim(1), th, tw});  // [B, C, th, tw]
  for (int64_t p = 0; p < BC; ++p)
    for (int64_t y = 0; y < th; ++y)
      std::copy_n(z.f32() + (p * H + i + y) * W + j, tw, t.f32() + (p * th + y) * tw);
  return t;
}

}  // namespace

Tensor AutoencoderKL::decode_tiled(const Tensor& z_in, int64_t tile_latent, int64_t tile_sample,
                                   double overlap_factor) const {
  Tensor z = check_latents(z_in);
  const int64_t overlap_size = int64_t(double(tile_latent) * (1.0 - overlap_factor));
  const int64_t blend_extent = int64_t(double(tile_sample) * overlap_factor);
  const int64_t row_limit = tile_sample - blend_extent;
  if (tile_latent < 1 || overlap_size < 1 || row_limit < 1)
    fail("[vae] tiled decode: latent tile ", tile_latent, " with overlap factor ", overlap_factor,
         " gives a step of ", overlap_size, " latents and a kept tile of ", row_limit, " pixels; both must be >= 1");
  const int64_t B = z.dim(0), h = z.dim(2), w = z.dim(3), s = cfg_.spatial_scale();
  const int64_t C = cfg_.out_channels;

  // Output size: the concatenated crops.
  auto kept = [&](int64_t extent) {
    int64_t total = 0;
    for (int64_t i = 0; i < extent; i += overlap_size) total += std::min(row_limit, std::min(tile_latent, extent - i) * s);
    return total;
  };
  const int64_t H = kept(h), W = kept(w);
  Tensor out = Tensor::empty(DType::F32, {B, C, H, W});  // [B, C, H, W]

  std::vector<Tensor> prev_row, row;
  int64_t y0 = 0;
  for (int64_t i = 0; i < h; i += overlap_size) {
    row.clear();
    int64_t x0 = 0, rows_kept = 0;
    for (int64_t j = 0; j < w; j += overlap_size) {
      Tensor tile = crop(z, i, j, std::min(tile_latent, h - i), std::min(tile_latent, w - j));
      if (cfg_.use_post_quant_conv) tile = post_quant_conv_.forward(tile, compute_);
      Tensor dec = decoder_.forward(tile, compute_);  // [B, C, th * s, tw * s]
      if (i > 0) blend_v(prev_row[row.size()], dec, blend_extent, compute_);
      if (j > 0) blend_h(row.back(), dec, blend_extent, compute_);
      const int64_t th = std::min(row_limit, dec.dim(2)), tw = std::min(row_limit, dec.dim(3));
      const int64_t dH = dec.dim(2), dW = dec.dim(3);
      for (int64_t p = 0; p < B * C; ++p)
        for (int64_t y = 0; y < th; ++y)
          std::copy_n(dec.f32() + (p * dH + y) * dW, tw, out.f32() + (p * H + y0 + y) * W + x0);
      x0 += tw;
      rows_kept = th;
      row.push_back(std::move(dec));
    }
    ZI_ASSERT(x0 == W, "tiled decode width ", x0, " != ", W);
    y0 += rows_kept;
    prev_row.swap(row);
  }
  ZI_ASSERT(y0 == H, "tiled decode height ", y0, " != ", H);
  return out;
}

}  // namespace zimage
