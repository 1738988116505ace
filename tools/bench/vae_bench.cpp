// bench_vae: AutoencoderKL decode time on random latents of an image size's shape.
//
//   bench_vae VAE_DIR [--size S | --width W --height H] [--dtype f32|bf16] [--threads N] [--reps R]
//             [--tiling off|auto|on] [--tile-mode seamless|diffusers] [--tile-size T] [--psnr]
//             [--latents FILE] [--psnr-vs-f32]
// Latents are [1, latent_channels, H / s, W / s] (s = the VAE's spatial scale), standard normal,
// fixed seed, already in VAE space (what the pipeline hands vae.decode). Tiling defaults to off,
// like diffusers' AutoencoderKL without enable_tiling(). Also reports the peak bytes of live tensors
// during a decode (activations and output; not oneDNN's scratch). --psnr also decodes untiled and
// reports the PSNR of the (tiled) result against it on the displayed range. --latents takes the
// latents of a run instead (`zimage generate --save-latents FILE`: [1, C, h, w] before the VAE's
// scaling, converted as the pipeline does; the size follows from them). --psnr-vs-f32 also loads
// the VAE in float32, decodes the same latents untiled and reports the PSNR of this dtype's
// (e.g. bf16) image against it on the displayed range and on the 8-bit PNG values, and the
// largest 8-bit difference. Prints one JSON line.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/safetensors.h"
#include "ops/ops.h"
#include "vae/autoencoder_kl.h"

using namespace zimage;

namespace {
[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: bench_vae VAE_DIR [--size S | --width W --height H] [--dtype f32|bf16] [--threads N] [--reps R] "
               "[--tiling off|auto|on] [--tile-mode seamless|diffusers] [--tile-size T] [--psnr] [--latents FILE] "
               "[--psnr-vs-f32]\n");
  std::exit(2);
}
double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
double disp(float v) { return std::min(1.0, std::max(0.0, double(v) * 0.5 + 0.5)); }  // VaeImageProcessor range
double psnr(double se, int64_t n, double peak) {
  const double mse = se / double(n);
  return mse == 0 ? 999.0 : 10.0 * std::log10(peak * peak / mse);
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) usage();
  std::string dir = argv[1], dtype = "f32", tiling = "off", tile_mode = "seamless";
  int64_t tile_size = 0;
  bool want_psnr = false, vs_f32 = false;
  std::string latents_file;
  int64_t width = 512, height = 512;
  int threads = 0, reps = 2;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (a == "--size")
      width = height = std::atol(next().c_str());
    else if (a == "--width")
      width = std::atol(next().c_str());
    else if (a == "--height")
      height = std::atol(next().c_str());
    else if (a == "--dtype")
      dtype = next();
    else if (a == "--threads")
      threads = std::atoi(next().c_str());
    else if (a == "--reps")
      reps = std::max(1, std::atoi(next().c_str()));
    else if (a == "--tiling")
      tiling = next();
    else if (a == "--tile-mode")
      tile_mode = next();
    else if (a == "--tile-size")
      tile_size = std::atol(next().c_str());
    else if (a == "--psnr")
      want_psnr = true;
    else if (a == "--psnr-vs-f32")
      vs_f32 = true;
    else if (a == "--latents")
      latents_file = next();
    else
      usage();
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
    Tensor run_latents;
    if (!latents_file.empty()) {
      run_latents = SafeTensorsFile(latents_file).get("latents").to(DType::F32);
      if (run_latents.ndim() != 4 || run_latents.dim(0) != 1 || run_latents.dim(1) != vae.config().latent_channels)
        fail("[bench_vae] ", latents_file, ": latents of shape ", shape_str(run_latents.shape()), ", expected [1, ",
             vae.config().latent_channels, ", h, w]");
      height = run_latents.dim(2) * s;
      width = run_latents.dim(3) * s;
    }
    if (width <= 0 || height <= 0 || width % s || height % s)
      fail("[bench_vae] image size ", width, "x", height, " is not a positive multiple of ", s);
    Tensor z = Tensor::empty(DType::F32, {1, vae.config().latent_channels, height / s, width / s});  // [B, C, h, w]
    std::mt19937 rng(0);
    std::normal_distribution<float> nd;
    for (int64_t i = 0; i < z.numel(); ++i) z.f32()[i] = nd(rng);
    if (run_latents.defined() && run_latents.numel()) z = vae.latents_to_vae_space(run_latents);
    VaeDecodeOptions opt;
    opt.tiling = tiling == "off"  ? VaeDecodeOptions::Tiling::Off
                 : tiling == "on" ? VaeDecodeOptions::Tiling::On
                                  : VaeDecodeOptions::Tiling::Auto;
    opt.tile_mode =
        tile_mode == "diffusers" ? VaeDecodeOptions::TileMode::Diffusers : VaeDecodeOptions::TileMode::Seamless;
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
    std::printf(
        "{\"load_s\": %.4f, \"width\": %ld, \"height\": %ld, \"dtype\": \"%s\", \"tiling\": \"%s\", "
        "\"tile_mode\": \"%s\", \"tile_size\": %ld, \"threads\": %d, \"peak_tensor_bytes\": %ld, \"seconds\": [",
        load_s, long(width), long(height), dtype.c_str(), tiling.c_str(), tile_mode.c_str(), long(tile_size),
        ops::num_threads(), long(peak));
    for (size_t i = 0; i < secs.size(); ++i) std::printf("%s%.5f", i ? ", " : "", secs[i]);
    std::printf("]");
    if (want_psnr) {
      Tensor ref = vae.decode_untiled(z);
      double se = 0;
      for (int64_t i = 0; i < ref.numel(); ++i) se += std::pow(disp(last.f32()[i]) - disp(ref.f32()[i]), 2);
      std::printf(", \"psnr_vs_untiled_db\": %.2f", psnr(se, ref.numel(), 1.0));
    }
    if (vs_f32) {
      AutoencoderKL f32 = AutoencoderKL::load(dir, DType::F32);
      const Tensor zf = run_latents.defined() && run_latents.numel() ? f32.latents_to_vae_space(run_latents) : z;
      const Tensor ref = f32.decode_untiled(zf), mine = tiling == "off" ? last : vae.decode_untiled(z);
      double se = 0, se8 = 0;
      int max8 = 0;
      for (int64_t i = 0; i < ref.numel(); ++i) {
        const double a = disp(mine.f32()[i]), b = disp(ref.f32()[i]);
        se += (a - b) * (a - b);
        const int a8 = int(std::nearbyint(a * 255)), b8 = int(std::nearbyint(b * 255));  // numpy round: half to even
        se8 += double(a8 - b8) * double(a8 - b8);
        max8 = std::max(max8, std::abs(a8 - b8));
      }
      std::printf(", \"psnr_vs_f32_db\": %.2f, \"psnr8_vs_f32_db\": %.2f, \"max_abs8_vs_f32\": %d, \"latents\": \"%s\"",
                  psnr(se, ref.numel(), 1.0), psnr(se8, ref.numel(), 255.0), max8,
                  latents_file.empty() ? "random" : latents_file.c_str());
    }
    std::printf("}\n");
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_vae: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
