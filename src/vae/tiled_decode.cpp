// Tiled decoding, two ways (VaeDecodeOptions::TileMode).
//
// Diffusers: AutoencoderKL.tiled_decode, streamed. diffusers decodes every tile, then blends each
// tile with the tile above (blend_v) and the tile to its left (blend_h) in place and concatenates
// the top-left row_limit x row_limit crops. Here tiles are decoded one at a time in the same order
// and written out at once, keeping only the previous row of decoded (already blended) tiles, so
// the working memory is one tile's decoder activations, not the image's. Each tile is normalised
// and attended on its own, so the result drifts from the untiled decode (21-24 dB on the
// random-weight fixtures, in diffusers too).
//
// Seamless: what makes a tile differ from the same region of the untiled decode is (1) the mid
// block's attention and group norms seeing only the tile, (2) the up path's group norms seeing
// only the tile, (3) zero padding at the tile's edges reaching inwards through the convolutions.
// (1): conv_in and the mid block run on the whole latent (latent resolution: 1/64 of the image's
// pixels). (3): each tile is decoded with a margin of Decoder::up_receptive_halo() latents and
// only its inner window is kept. (2): a first pass decodes every tile with its own statistics and
// records each group norm's statistics over the tile's kept window; merged, they estimate the
// whole image's, and the second pass normalises every tile with them. The working memory stays
// one (margined) tile's activations plus the latent-resolution head and the output.
#include <algorithm>
#include <vector>

#include "vae/autoencoder_kl.h"

namespace zimage {

namespace {

// b[:, :, y, :] = a[:, :, -e + y, :] * (1 - y / e) + b[:, :, y, :] * (y / e), e = min(a.H, b.H, extent)
void blend_v(const Tensor& a, Tensor& b, int64_t extent, ops::Precision pr) {
  const int64_t BC = b.dim(0) * b.dim(1), aH = a.dim(2), bH = b.dim(2), W = b.dim(3);
  const int64_t e = std::min({aH, bH, extent});
  ZI_ASSERT(a.dim(3) == W, "blend_v widths ", a.dim(3), " != ", W);
  for (int64_t y = 0; y < e; ++y) {
    const float wa = float(1.0 - double(y) / double(e)), wb = float(double(y) / double(e));
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < BC; ++p) {
      const float* ar = a.f32() + (p * aH + aH - e + y) * W;
      float* br = b.f32() + (p * bH + y) * W;
      for (int64_t x = 0; x < W; ++x) {
        br[x] = pr.store(pr.store(ar[x] * wa) + pr.store(br[x] * wb));
      }
    }
  }
}

// b[:, :, :, x] = a[:, :, :, -e + x] * (1 - x / e) + b[:, :, :, x] * (x / e), e = min(a.W, b.W, extent)
void blend_h(const Tensor& a, Tensor& b, int64_t extent, ops::Precision pr) {
  const int64_t BC = b.dim(0) * b.dim(1), H = b.dim(2), aW = a.dim(3), bW = b.dim(3);
  const int64_t e = std::min({aW, bW, extent});
  ZI_ASSERT(a.dim(2) == H, "blend_h heights ", a.dim(2), " != ", H);
#pragma omp parallel for schedule(static) collapse(2)
  for (int64_t p = 0; p < BC; ++p)
    for (int64_t y = 0; y < H; ++y) {
      const float* ar = a.f32() + (p * H + y) * aW;
      float* br = b.f32() + (p * H + y) * bW;
      for (int64_t x = 0; x < e; ++x) {
        const float wa = float(1.0 - double(x) / double(e)), wb = float(double(x) / double(e));
        br[x] = pr.store(pr.store(ar[aW - e + x] * wa) + pr.store(br[x] * wb));
      }
    }
}

// z[:, :, i:i+th, j:j+tw] copied out (latent tiles are small).
Tensor crop(const Tensor& z, int64_t i, int64_t j, int64_t th, int64_t tw) {
  const int64_t BC = z.dim(0) * z.dim(1), H = z.dim(2), W = z.dim(3);
  Tensor t = Tensor::empty(DType::F32, {z.dim(0), z.dim(1), th, tw});  // [B, C, th, tw]
  for (int64_t p = 0; p < BC; ++p)
    for (int64_t y = 0; y < th; ++y) std::copy_n(z.f32() + (p * H + i + y) * W + j, tw, t.f32() + (p * th + y) * tw);
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
    fail("[vae] tiled decode: latent tile ", tile_latent, " with overlap factor ", overlap_factor, " gives a step of ",
         overlap_size, " latents and a kept tile of ", row_limit, " pixels; both must be >= 1");
  const int64_t B = z.dim(0), h = z.dim(2), w = z.dim(3), s = cfg_.spatial_scale();
  const int64_t C = cfg_.out_channels;

  // Output size: the concatenated crops.
  auto kept = [&](int64_t extent) {
    int64_t total = 0;
    for (int64_t i = 0; i < extent; i += overlap_size)
      total += std::min(row_limit, std::min(tile_latent, extent - i) * s);
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
      if (cfg_.use_post_quant_conv) tile = post_quant_conv_.forward(tile, prec_);
      Tensor dec = decoder_.forward(tile, prec_);  // [B, C, th * s, tw * s]
      if (i > 0) blend_v(prev_row[row.size()], dec, blend_extent, prec_);
      if (j > 0) blend_h(row.back(), dec, blend_extent, prec_);
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

namespace {

// x[:, y0:y1, x0:x1, :] of a channels-last [B, H, W, C] tensor, copied.
Tensor crop_channels_last(const Tensor& x, int64_t y0, int64_t y1, int64_t x0, int64_t x1) {
  const int64_t B = x.dim(0), H = x.dim(1), W = x.dim(2), C = x.dim(3);
  const size_t px = size_t(C) * dtype_size(x.dtype());
  Tensor t = Tensor::empty(x.dtype(), {B, y1 - y0, x1 - x0, C});  // [B, th, tw, C]
  const char* src = static_cast<const char*>(x.raw());
  char* dst = static_cast<char*>(t.raw());
  for (int64_t n = 0; n < B; ++n)
    for (int64_t y = y0; y < y1; ++y)
      std::copy_n(src + size_t((n * H + y) * W + x0) * px, size_t(x1 - x0) * px,
                  dst + size_t((n * (y1 - y0) + y - y0) * (x1 - x0)) * px);
  return t;
}

}  // namespace

Tensor AutoencoderKL::decode_tiled_seamless(const Tensor& z_in, int64_t tile) const {
  // A tile is decoded with a margin of `halo` latents on every side: below 8 latents the margins
  // would cost many times the tile itself.
  if (tile < 8) fail("[vae] seamless tiled decode: tile size ", tile, " latents is below the minimum of 8");
  Tensor z = check_latents(z_in);
  if (cfg_.use_post_quant_conv) z = post_quant_conv_.forward(z, prec_);  // 1x1: per pixel
  const int64_t B = z.dim(0), h = z.dim(2), w = z.dim(3), s = cfg_.spatial_scale(), C = cfg_.out_channels;
  const int64_t halo = decoder_.up_receptive_halo();
  const Tensor head = decoder_.forward_head(z, prec_);  // [B, h, w, C_mid] channels-last

  struct Tile {
    int64_t y0, y1, x0, x1;  // the decoded region, latent pixels
    ops::PixelWindow keep;   // the kept window, relative to the region
  };
  std::vector<Tile> tiles;
  for (int64_t i = 0; i < h; i += tile)
    for (int64_t j = 0; j < w; j += tile) {
      Tile t{std::max<int64_t>(0, i - halo),
             std::min(h, i + tile + halo),
             std::max<int64_t>(0, j - halo),
             std::min(w, j + tile + halo),
             {}};
      t.keep = {i - t.y0, std::min(h, i + tile) - t.y0, j - t.x0, std::min(w, j + tile) - t.x0};
      tiles.push_back(t);
    }

  vae::TileNorms norms;
  auto run = [&](const Tile& t) {
    norms.tile_h = t.y1 - t.y0;
    norms.tile_w = t.x1 - t.x0;
    norms.keep = t.keep;
    return decoder_.forward_up(crop_channels_last(head, t.y0, t.y1, t.x0, t.x1), &norms);
  };
  norms.mode = vae::TileNorms::Mode::Record;  // pass 1: the whole image's group norm statistics
  for (const Tile& t : tiles) run(t);
  norms.mode = vae::TileNorms::Mode::Fixed;  // pass 2: decode with them
  const int64_t H = h * s, W = w * s;
  Tensor out = Tensor::empty(DType::F32, {B, C, H, W});  // [B, C, H, W]
  for (const Tile& t : tiles) {
    Tensor dec = run(t);  // [B, C, th * s, tw * s]
    const int64_t dH = dec.dim(2), dW = dec.dim(3);
    const int64_t ky0 = t.keep.y0 * s, ky1 = t.keep.y1 * s, kx0 = t.keep.x0 * s, kx1 = t.keep.x1 * s;
    const int64_t oy = (t.y0 + t.keep.y0) * s, ox = (t.x0 + t.keep.x0) * s;
    for (int64_t p = 0; p < B * C; ++p)
      for (int64_t y = ky0; y < ky1; ++y)
        std::copy_n(dec.f32() + (p * dH + y) * dW + kx0, kx1 - kx0, out.f32() + (p * H + oy + y - ky0) * W + ox);
  }
  return out;
}

}  // namespace zimage
