#include "cli_generate.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "zimage/image.h"
#include "zimage/pipeline.h"

namespace zimage::cli {
namespace fs = std::filesystem;

void add_generate_options(CLI::App& g, GenerateArgs& a) {
  g.add_option("-m,--model", a.model, "model folder or hub id in the Hugging Face cache (required unless --from-png names one)");
  g.add_option("-p,--prompt", a.prompt, "prompt (repeat for a list of prompts)");
  g.add_option("--from-png", a.from_png, "regenerate: take prompt, size, steps, guidance, seed, ... from a zimage PNG's metadata")
      ->check(CLI::ExistingFile);
  g.add_option("-n,--negative-prompt", a.negative_prompt, "negative prompt (one, or one per prompt); used when guidance > 0");
  g.add_option("-W,--width", a.width, "image width in pixels, a multiple of 16")->capture_default_str();
  g.add_option("-H,--height", a.height, "image height in pixels, a multiple of 16")->capture_default_str();
  g.add_option("-s,--steps", a.steps, "number of denoising steps")->capture_default_str();
  g.add_option("-g,--guidance", a.guidance, "guidance scale (0 disables classifier-free guidance)")->capture_default_str();
  g.add_flag("--cfg-normalization", a.cfg_normalization, "renormalise the CFG prediction to the conditional norm");
  g.add_option("--cfg-truncation", a.cfg_truncation, "disable CFG once the normalised time exceeds this value")->capture_default_str();
  g.add_option("--seed", a.seed, "seed(s) of torch.Generator(\"cpu\").manual_seed; one per image for a list")->delimiter(',');
  g.add_option("--num-images", a.num_images, "images per prompt")->capture_default_str();
  g.add_option("--max-sequence-length", a.max_sequence_length, "prompt token limit")->capture_default_str();
  g.add_option("--dtype", a.dtype, "compute dtype: bfloat16, float16, float32")->capture_default_str();
  g.add_option("--vae-dtype", a.vae_dtype, "VAE compute dtype")->capture_default_str();
  g.add_option("--device", a.device, "cpu or cuda")->capture_default_str();
  g.add_option("--attention", a.attention, "attention backend (diffusers names: native, flash, _flash_3, ...)")->capture_default_str();
  g.add_option("-t,--threads", a.threads, "CPU threads (0 = all cores)")->capture_default_str();
  g.add_option("-o,--output", a.output, "output PNG; several images are numbered out.png, out-1.png, ...")->capture_default_str();
  g.add_flag("--overwrite", a.overwrite, "overwrite existing output files");
  g.add_flag("-q,--quiet", a.quiet, "no progress output");
  g.add_flag("--local-files-only", a.local_files_only, "never download: a hub id must be complete in the cache (as HF_HUB_OFFLINE=1)");
  g.add_flag("--low-memory", a.low_memory, "load one component at a time (peak memory = largest component)");
  g.add_option("--vae-tiling", a.vae_tiling, "tiled VAE decode: auto (when the untiled decode would not fit in half the memory), on, off")
      ->capture_default_str();
  g.add_option("--vae-tile-mode", a.vae_tile_mode,
               "seamless (whole-image statistics, close to untiled) or diffusers (AutoencoderKL.tiled_decode exactly)")
      ->capture_default_str();
  g.add_option("--vae-tile-size", a.vae_tile_size, "VAE tile size in latent pixels (x8 image pixels); 0 = automatic")
      ->capture_default_str();
  g.add_option("--save-latents", a.save_latents, "also write the final latents to this .safetensors file");
  // A repeated scalar option takes its last value (as most CLIs do); list options accumulate.
  for (CLI::Option* o : g.get_options())
    if (o->get_items_expected_max() == 1) o->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  g.final_callback([&g, &a] {
    for (CLI::Option* o : g.get_options())
      if (o->count() > 0) a.given.insert(o->get_name());
  });
}

void apply_png_parameters(const std::string& png, GenerateArgs& a) {
  auto meta = read_png_metadata(png);
  auto it = meta.find("zimage");
  if (it == meta.end()) fail("[from-png] ", png, " has no zimage parameters (not written by zimage)");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(it->second);
  } catch (const nlohmann::json::exception& e) {
    fail("[from-png] ", png, ": zimage parameters are not valid JSON (", e.what(), ")");
  }
  auto take = [&](const char* opt, const char* key, auto& field) {
    if (a.given.count(opt) || !j.contains(key)) return;
    try {
      j.at(key).get_to(field);
    } catch (const nlohmann::json::exception&) {
      fail("[from-png] ", png, ": parameter '", key, "' has the wrong type: ", j.at(key).dump());
    }
  };
  if (!a.given.count("--prompt") && j.contains("prompt")) a.prompt = {j["prompt"].get<std::string>()};
  if (!a.given.count("--negative-prompt") && j.contains("negative_prompt")) {
    std::string n = j["negative_prompt"].get<std::string>();
    a.negative_prompt = n.empty() ? std::vector<std::string>{} : std::vector<std::string>{n};
  }
  if (!a.given.count("--seed") && j.contains("seed")) a.seed = {j["seed"].get<uint64_t>()};
  take("--width", "width", a.width);
  take("--height", "height", a.height);
  take("--steps", "num_inference_steps", a.steps);
  take("--guidance", "guidance_scale", a.guidance);
  take("--cfg-normalization", "cfg_normalization", a.cfg_normalization);
  take("--cfg-truncation", "cfg_truncation", a.cfg_truncation);
  take("--max-sequence-length", "max_sequence_length", a.max_sequence_length);
  take("--dtype", "dtype", a.dtype);
  take("--vae-dtype", "vae_dtype", a.vae_dtype);
  take("--vae-tiling", "vae_tiling", a.vae_tiling);
  take("--vae-tile-mode", "vae_tile_mode", a.vae_tile_mode);
  take("--vae-tile-size", "vae_tile_size", a.vae_tile_size);
  take("--model", "model", a.model);
}

namespace {

// Fails early (before any model work) when the output folder cannot take the file.
void check_output_path(const std::string& out) {
  fs::path p(out);
  fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
  if (p.filename().empty()) fail("[output] '", out, "' names a folder, not a file");
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail("[output] folder '", dir.string(), "' does not exist");
  if (fs::is_directory(p, ec)) fail("[output] '", out, "' is a folder");
  if (access(dir.c_str(), W_OK) != 0) fail("[output] folder '", dir.string(), "' is not writable");
}

class ProgressPrinter {
 public:
  ProgressPrinter(bool quiet) : quiet_(quiet), tty_(isatty(STDERR_FILENO)) {}
  void operator()(const Progress& p) {
    if (quiet_) return;
    if (p.stage != "denoise") {
      if (tty_) std::fprintf(stderr, "\r\033[K");
      std::fprintf(stderr, "%s: %.2f s\n", p.stage.c_str(), p.seconds);
      return;
    }
    sum_ += p.seconds;
    double per = sum_ / std::max(1, p.step);
    double eta = per * (p.num_steps - p.step);
    if (tty_) {
      int w = 30, filled = p.num_steps ? w * p.step / p.num_steps : w;
      std::string bar(size_t(filled), '#');
      bar.resize(size_t(w), '.');
      std::fprintf(stderr, "\r\033[Kdenoise [%s] %d/%d  %.2f s/step  ETA %.0f s", bar.c_str(), p.step, p.num_steps, per, eta);
      if (p.step == p.num_steps) std::fprintf(stderr, "\n");
    } else {
      std::fprintf(stderr, "denoise step %d/%d: %.2f s (ETA %.0f s)\n", p.step, p.num_steps, p.seconds, eta);
    }
    std::fflush(stderr);
  }

 private:
  bool quiet_, tty_;
  double sum_ = 0;
};

}  // namespace

int run_generate(GenerateArgs a) {
  if (!a.from_png.empty()) apply_png_parameters(a.from_png, a);
  if (a.prompt.empty()) fail("[generate] no prompt: give -p/--prompt (or --from-png)");
  if (a.model.empty()) fail("[generate] no model: give -m/--model");
  check_output_path(a.output);
  if (!a.save_latents.empty()) check_output_path(a.save_latents);
  PretrainedOptions po;
  po.torch_dtype = a.dtype;
  po.vae_dtype = a.vae_dtype;
  po.device = a.device;
  po.num_threads = a.threads;
  po.low_memory = a.low_memory;
  po.local_files_only = a.local_files_only;

  CallParams cp;
  cp.prompt = a.prompt;
  cp.negative_prompt = a.negative_prompt;
  cp.width = a.width;
  cp.height = a.height;
  cp.num_inference_steps = a.steps;
  cp.guidance_scale = float(a.guidance);
  cp.cfg_normalization = a.cfg_normalization;
  cp.cfg_truncation = a.cfg_truncation;
  cp.num_images_per_prompt = a.num_images;
  cp.max_sequence_length = a.max_sequence_length;
  std::vector<uint64_t> seeds = a.seed;
  if (seeds.empty()) seeds.push_back(std::random_device{}() | (uint64_t(std::random_device{}()) << 32) >> 1);
  for (auto s : seeds) cp.generator.push_back(Generator{s, "cpu"});
  VaeTilingOptions tiling;
  tiling.tiling = a.vae_tiling;
  tiling.mode = a.vae_tile_mode;
  tiling.tile_size = a.vae_tile_size;
  // Validate everything cheap before loading weights.
  validate_call_params(cp);
  validate_vae_tiling(tiling);

  auto t0 = std::chrono::steady_clock::now();
  ZImagePipeline pipe = ZImagePipeline::from_pretrained(a.model, po);
  pipe.set_attention_backend(a.attention);
  pipe.set_vae_tiling(tiling);
  double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ProgressPrinter printer(a.quiet);
  PipelineOutput out = pipe(cp, [&](const Progress& p) { printer(p); });
  for (auto& w : out.warnings) std::fprintf(stderr, "zimage: warning: %s\n", w.c_str());

  const int n = int(out.images.size());
  const int per_prompt = a.num_images;
  for (int i = 0; i < n; ++i) {
    const std::string& prompt = a.prompt[size_t(i / per_prompt)];
    std::string neg = a.negative_prompt.empty() ? "" : a.negative_prompt[a.negative_prompt.size() == 1 ? 0 : size_t(i / per_prompt)];
    PngMetadata meta;
    InfotextParams ip;
    ip.prompt = prompt;
    ip.negative_prompt = a.guidance > 0 ? neg : "";
    ip.steps = a.steps;
    ip.sampler = "Euler";
    ip.cfg_scale = a.guidance;
    ip.seed = out.seeds[size_t(i)];
    ip.width = a.width;
    ip.height = a.height;
    ip.model = fs::path(pipe.folder()).filename().string();
    ip.extra = {{"Schedule type", "Flow match"}, {"Version", "zimage.cpp 0.1.0"}};
    meta.parameters = ip;
    meta.zimage = {{"prompt", prompt},
                   {"negative_prompt", neg},
                   {"height", a.height},
                   {"width", a.width},
                   {"num_inference_steps", a.steps},
                   {"guidance_scale", a.guidance},
                   {"cfg_normalization", a.cfg_normalization},
                   {"cfg_truncation", a.cfg_truncation},
                   {"seed", out.seeds[size_t(i)]},
                   {"image_index", i},
                   {"num_images_per_prompt", a.num_images},
                   {"max_sequence_length", a.max_sequence_length},
                   {"dtype", a.dtype},
                   {"vae_dtype", a.vae_dtype},
                   {"vae_tiling", a.vae_tiling},
                   {"vae_tile_mode", a.vae_tile_mode},
                   {"vae_tile_size", a.vae_tile_size},
                   {"model", a.model},
                   {"generator", "torch.Generator(\"cpu\")"},
                   {"version", "zimage.cpp 0.1.0"}};
    PngWriteOptions wo;
    wo.overwrite = a.overwrite;
    std::string path;
    if (a.overwrite) {
      fs::path p(a.output);
      path = i == 0 ? a.output : (p.parent_path() / (p.stem().string() + "-" + std::to_string(i) + p.extension().string())).string();
    } else {
      path = next_free_path(a.output, i == 0 ? 0 : i);
    }
    write_png(path, out.images[size_t(i)], meta, wo);
    if (!a.quiet) std::fprintf(stderr, "wrote %s (seed %llu)\n", path.c_str(), (unsigned long long)out.seeds[size_t(i)]);
    std::printf("%s\n", path.c_str());
  }
  if (!a.save_latents.empty()) save_latents(a.save_latents, out.latents);
  if (!a.quiet) {
    std::fprintf(stderr, "time: load %.2f s, text encoder %.2f s, denoise %.2f s (%.2f s/step), vae %.2f s, total %.2f s\n", load_s,
                 out.times.text_encoder, out.times.denoise,
                 out.times.step_seconds.empty() ? 0.0 : out.times.denoise / double(out.times.step_seconds.size()), out.times.vae,
                 out.times.total + load_s);
  }
  return 0;
}

int run_info(const std::string& model) {
  PretrainedOptions po;
  po.local_files_only = true;  // info never downloads (`zimage pull` does)
  std::printf("%s\n", describe_model(model, po).c_str());
  return 0;
}

}  // namespace zimage::cli
