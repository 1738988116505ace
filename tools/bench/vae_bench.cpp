// bench_vae: AutoencoderKL decode time on random latents of an image size's shape.
//
//   bench_vae VAE_DIR [--size S | --width W --height H] [--dtype f32|bf16] [--threads N] [--reps R]
//             [--tiling off|auto|on] [--tile-mode seamless|diffusers] [--tile-size T] [--psnr]
// Latents are [1, latent_channels, H / s, W / s] (s = the VAE's spatial scale), standard normal,
// fixed seed, already in VAE space (what the pipeline hands vae.decode). Tiling defaults to off,
// like diffusers' AutoencoderKL without enable_tiling(). Also reports the peak bytes of live tensors
// during a decode (activations and output; not oneDNN's scratch). --psnr also decodes untiled and
// reports the PSNR of the (tiled) result against it on the displayed range. Prints one JSON line.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "ops/ops.h"
#include "vae/autoencoder_kl.h"

using namespace zimage;

namespace {
[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: bench_vae VAE_DIR [--size S | --width W --height H] [--dtype f32|bf16] [--threads N] [--reps R] "
               "[--tiling off|auto|on] [--tile-mode seamless|diffusers] [--tile-size T] [--psnr]\n");
  std::exit(2);
}
double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) usage();
  std::string dir = argv[1], dtype = "f32", tiling = "off", tile_mode = "seamless";
  int64_t tile_size = 0;
  bool want_psnr = false;
  int64_t width = 512, height = 512;
  int threads = 0, reps = 2;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (a == "--size") width = height = std::atol(next().c_str());
    else if (a == "--width") width = std::atol(next().c_str());
    else if (a == "--height") height = std::atol(next().c_str());
    else if (a == "--dtype") dtype = next();
    else if (a == "--threads") threads = std::atoi(next().c_str());
    else if (a == "--reps") reps = std::max(1, std::atoi(next().c_str()));
    else if (a == "--tiling") tiling = next();
    else if (a == "--tile-mode") tile_mode = next();
    else if (a == "--tile-size") tile_size = std::atol(next().c_str());
    else if (a == "--psnr") want_psnr = true;
    else usage();
  }
  if ((dtype != "f32" && dtype != "bf16") || (tiling != "off" && tiling != "auto" && tiling != "on") ||
      (tile_mode != "seamless" && tile_mode != "diffusers") || tile_size < 0)
    usage();
  try {
    ops::set_num_threads(threads);
    auto t0 = std::chrono::steady_clock::now();
    AutoencoderKL vae = AutoencoderKL::load(dir, dtype == "bf16" ? DType::BF16 : DType::F32);
    double load_s = since(t0);
    const int64_t s = vae.config().spatial_scale();
    if (width <= 0 || height <= 0 || width % s || height % s)
      fail("[bench_vae] image size ", width, "x", height, " is not a positive multiple of ", s);
    Tensor z = Tensor::empty(DType::F32, {1, vae.config().latent_channels, height / s, width / s});  // [B, C, h, w]
    std::mt19937 rng(0);
    std::normal_distribution<float> nd;
    for (int64_t i = 0; i < z.numel(); ++i) z.f32()[i] = nd(rng);
    VaeDecodeOptions opt;
    opt.tiling = tiling == "off" ? VaeDecodeOptions::Tiling::Off
                 : tiling == "on" ? VaeDecodeOptions::Tiling::On
                                  : VaeDecodeOptions::Tiling::Auto;
    opt.tile_mode = tile_mode == "diffusers" ? VaeDecodeOptions::TileMode::Diffusers : VaeDecodeOptions::TileMode::Seamless;
    opt.tile_latent_size = tile_size;
    std::vector<double> secs;
    int64_t peak = 0;
    Tensor last;
    for (int r = 0; r < reps; ++r) {
      const int64_t live = tensor_bytes_live();
      reset_tensor_bytes_peak();
      auto s0 = std::chrono::steady_clock::now();
      Tensor img = vae.decode(z, opt);
      secs.push_back(since(s0));
      peak = std::max(peak, tensor_bytes_peak() - live);
      last = img;
      if (img.dim(2) != height || img.dim(3) != width) fail("[bench_vae] decoded ", shape_str(img.shape()));
    }
    std::printf("{\"load_s\": %.4f, \"width\": %ld, \"height\": %ld, \"dtype\": \"%s\", \"tiling\": \"%s\", "
                "\"tile_mode\": \"%s\", \"tile_size\": %ld, \"threads\": %d, \"peak_tensor_bytes\": %ld, \"seconds\": [",
                load_s, long(width), long(height), dtype.c_str(), tiling.c_str(), tile_mode.c_str(), long(tile_size),
                ops::num_threads(), long(peak));
    for (size_t i = 0; i < secs.size(); ++i) std::printf("%s%.5f", i ? ", " : "", secs[i]);
    std::printf("]");
    if (want_psnr) {
      Tensor ref = vae.decode_untiled(z);
      double se = 0;
      auto disp = [](float v) { return std::min(1.0, std::max(0.0, double(v) * 0.5 + 0.5)); };
      for (int64_t i = 0; i < ref.numel(); ++i) se += std::pow(disp(last.f32()[i]) - disp(ref.f32()[i]), 2);
      const double mse = se / double(ref.numel());
      std::printf(", \"psnr_vs_untiled_db\": %.2f", mse == 0 ? 999.0 : 10.0 * std::log10(1.0 / mse));
    }
    std::printf("}\n");
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_vae: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
