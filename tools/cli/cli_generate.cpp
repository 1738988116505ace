#include "cli_generate.h"

#include <unistd.h>

#include <sys/stat.h>

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>

#include "core/error.h"
#include "core/file_io.h"
#include "generation_params.h"
#include "image/atomic_file.h"
#include "image/text.h"
#include "random/randn_tensor.h"
#include "server/params.h"
#include "weights/lora.h"
#include "zimage/image.h"
#include "zimage/pipeline.h"

#ifndef ZIMAGE_VERSION
#define ZIMAGE_VERSION "unknown"
#endif
#ifndef ZIMAGE_BUILD_TYPE
#define ZIMAGE_BUILD_TYPE "unknown"
#endif

namespace zimage::cli {
namespace fs = std::filesystem;

const char* const kExitCodes =
    "Exit codes: 0 success; 1 bad input or usage (options, prompts, parameters, model files, PNGs,\n"
    "outputs that cannot be written; nothing is written); 2 out of memory; 3 internal error (a bug).";

std::string version_text() {
  std::string compiler =
#if defined(__clang__)
      std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
      std::string("GCC ") + __VERSION__;
#else
      std::string("unknown compiler");
#endif
#ifdef ZIMAGE_WITH_CUDA
  const char* cuda = "CUDA backend: yes";
#else
  const char* cuda = "CUDA backend: no";
#endif
  return std::string("zimage.cpp ") + ZIMAGE_VERSION + "\nbuilt with " + compiler + ", C++" +
         std::to_string(__cplusplus / 100 % 100) + ", " + ZIMAGE_BUILD_TYPE + " build\n" + cuda;
}

void add_generate_options(CLI::App& g, GenerateArgs& a) {
  add_param_options(g, a, kGenerate);
  // A repeated scalar option takes its last value (as most CLIs do); list options accumulate.
  for (CLI::Option* o : g.get_options())
    if (o->get_items_expected_max() == 1) o->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  g.final_callback([&g, &a] {
    for (CLI::Option* o : g.get_options())
      if (o->count() > 0) a.given.insert(o->get_name());
  });
}

namespace {

using json = nlohmann::json;

// The message of a lower-level error without its "[component] " prefix.
std::string without_component(const std::string& what) {
  if (!what.empty() && what[0] == '[') {
    size_t e = what.find("] ");
    if (e != std::string::npos) return what.substr(e + 2);
  }
  return what;
}

// A PNG with only the A1111 "parameters" text: prompt, negative prompt, Steps, CFG scale, Seed,
// Size and Model; everything else keeps its default.
void apply_infotext(const std::string& png, const std::string& text, GenerateArgs& a) {
  InfotextValues v;
  try {
    v = read_infotext(text);
  } catch (const Error& e) {
    fail("[from-png] ", png, ": A1111 parameters: ", without_component(e.what()));
  }
  if (!a.given.count("--prompt")) {
    if (v.prompt.empty()) fail("[from-png] ", png, ": the A1111 parameters hold no prompt");
    a.prompt = {v.prompt};
  }
  if (!a.given.count("--negative-prompt"))
    a.negative_prompt =
        v.negative_prompt.empty() ? std::vector<std::string>{} : std::vector<std::string>{v.negative_prompt};
  if (v.steps && !a.given.count("--steps")) a.steps = *v.steps;
  if (v.cfg_scale && !a.given.count("--guidance")) a.guidance = *v.cfg_scale;
  if (v.seed && !a.given.count("--seed")) a.seed = {std::to_string(*v.seed)};
  if (v.width && !a.given.count("--width")) a.width = *v.width;
  if (v.height && !a.given.count("--height")) a.height = *v.height;
  if (v.model && !a.given.count("--model")) a.model = *v.model;
}

}  // namespace

void apply_png_parameters(const std::string& png, GenerateArgs& a) {
  auto meta = read_png_metadata(png);
  auto it = meta.find("zimage");
  if (it == meta.end()) {
    auto p = meta.find("parameters");
    if (p == meta.end())
      fail("[from-png] ", png,
           " has no generation parameters (neither a 'zimage' nor an A1111 'parameters' text chunk)");
    apply_infotext(png, p->second, a);
    return;
  }
  // Bounded nesting: the JSON comes from an untrusted file, and error messages dump() values.
  const json j = parse_json_text(it->second, png + ": zimage parameters", "[from-png] ");
  if (!j.is_object()) fail("[from-png] ", png, ": zimage parameters are not a JSON object");
  restore_params(PngParams(png, j, a.given), j, a);
}

namespace {

// Fails early (before any model work) when the output cannot be written: the folder must exist
// and be writable; an existing path must be a regular file.
void check_output_path(const std::string& out, const char* what) {
  fs::path p(out);
  fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
  if (out.empty()) fail("[output] ", what, " is an empty path");
  if (p.filename().empty()) fail("[output] ", what, " '", out, "' names a folder, not a file");
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail("[output] folder '", dir.string(), "' does not exist");
  struct stat st;
  if (::stat(out.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) fail("[output] ", what, " '", out, "' is a folder");
    if (!S_ISREG(st.st_mode))
      fail("[output] ", what, " '", out,
           "' exists and is not a regular file (a device, pipe or socket); give a file path");
  }
  if (access(dir.c_str(), W_OK) != 0) fail("[output] folder '", dir.string(), "' is not writable");
}

// "out.png" numbered k: k == 0 -> out.png, else out-k.png.
std::string numbered(const std::string& out, int k) {
  if (k == 0) return out;
  fs::path p(out);
  return (p.parent_path() / (p.stem().string() + "-" + std::to_string(k) + p.extension().string())).string();
}

// The name for the infotext's "Model:": the hub id when the model was given as one, else the folder's name.
std::string model_name(const std::string& given, const std::string& folder) {
  std::error_code ec;
  if (!fs::is_directory(given, ec)) return given;
  fs::path f(folder);
  if (f.filename().empty()) f = f.parent_path();  // "model/"
  return f.filename().string();
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
      std::fprintf(stderr, "\r\033[Kdenoise [%s] %d/%d  %.2f s/step  ETA %.0f s", bar.c_str(), p.step, p.num_steps, per,
                   eta);
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
  check_model_or_files(a, "[generate] ", "-m/--model");  // without one: every component a single file
  params::check_prompt_text(a.prompt, "prompt", "[generate] ");
  params::check_prompt_text(a.negative_prompt, "negative prompt", "[generate] ");
  std::vector<std::optional<uint64_t>> seed_args;
  for (const auto& s : a.seed) seed_args.push_back(params::parse_seed(s, "--seed", "[generate] "));
  check_output_path(a.output, "output");
  if (!a.save_latents.empty()) {
    check_output_path(a.save_latents, "--save-latents file");
    std::error_code ec;
    if (fs::weakly_canonical(a.save_latents, ec) == fs::weakly_canonical(a.output, ec))
      fail("[output] --save-latents '", a.save_latents, "' is the output PNG's path");
    if (!a.overwrite && fs::exists(a.save_latents, ec))
      fail("[output] --save-latents file '", a.save_latents, "' exists (give --overwrite to replace it)");
  }
  // Every plain option's value goes where the table says; what depends on several options follows.
  PretrainedOptions po;
  CallParams cp;
  VaeTilingOptions tiling;
  PipelineTargets targets{po, cp, tiling};
  apply_params(a, targets);
  // Each LoRA: its name (file stem), sha256 and scale go into the PNG metadata.
  struct LoraMeta {
    std::string name, sha256, scale;
  };
  std::vector<LoraMeta> lora_meta;
  for (const auto& arg : a.lora) {
    weights::LoraSpec l = weights::parse_lora_arg(arg);
    std::error_code ec;
    if (!fs::is_regular_file(l.path, ec)) fail("[lora] ", l.path, " does not exist or is not a file");
    po.loras.push_back({l.path, l.scale, l.name});
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, l.scale);
    lora_meta.push_back({fs::path(l.path).stem().string(), weights::file_sha256(l.path), std::string(buf, r.ptr)});
  }
  if (!a.control_image.empty() && a.controlnet.empty()) fail("[generate] --control-image needs --controlnet MODEL");
  if (!a.controlnet.empty() && a.control_image.empty()) fail("[generate] --controlnet needs --control-image FILE");
  if (a.control_scale && a.control_image.empty()) fail("[generate] --control-scale needs --control-image");
  if (!a.controlnet.empty()) {
    std::error_code ec;
    if (!fs::exists(a.controlnet, ec))
      fail("[controlnet] '", a.controlnet, "' does not exist (a ZImageControlNetModel folder or a .safetensors file)");
  }
  validate_pretrained_options(po);

  if (!a.mask.empty() && a.init_image.empty()) fail("[generate] --mask needs --init-image (the image to inpaint)");
  if (a.strength && a.init_image.empty()) fail("[generate] --strength needs --init-image");
  json inputs = json::object();  // PNG metadata: file name and sha256 of each input image
  if (!a.init_image.empty()) {
    cp.image = read_image(a.init_image);
    inputs["init_image"] = {{"file", a.init_image}, {"sha256", sha256_hex(a.init_image)}};
    // The output has the image's size (rounded down to multiples of 16 by a resize); a size given
    // on the command line must be that size.
    if (!a.given.count("--width")) cp.width = std::nullopt;
    if (!a.given.count("--height")) cp.height = std::nullopt;
    if (!a.mask.empty()) {
      cp.mask_image = read_image(a.mask);
      inputs["mask_image"] = {{"file", a.mask}, {"sha256", sha256_hex(a.mask)}};
    }
  }
  if (!a.control_image.empty()) {
    cp.control_image = read_image(a.control_image);
    inputs["control_image"] = {{"file", a.control_image}, {"sha256", sha256_hex(a.control_image)}};
    // The ControlNet pipelines resize every input to the output size: by default the init image's
    // (ControlNet inpainting) or the control image's, rounded down to multiples of 16.
    const Image& sized = cp.image ? *cp.image : *cp.control_image;
    if (!a.given.count("--width") && !a.size_from_png) a.width = std::max(16, sized.width / 16 * 16);
    if (!a.given.count("--height") && !a.size_from_png) a.height = std::max(16, sized.height / 16 * 16);
    cp.width = a.width;
    cp.height = a.height;
  }
  if (seed_args.empty()) seed_args.push_back(std::nullopt);
  for (auto s : seed_args) cp.generator.push_back(Generator{s ? *s : params::random_seed(), "cpu"});
  // Validate everything cheap before loading weights.
  validate_call_params(cp);
  validate_vae_tiling(tiling);
  const int n_images = int(a.prompt.size()) * a.num_images;
  // An image of a batch drawn from one seed (--from-png): its noise is one slice of that draw.
  const bool noise_slice = a.noise_batch_size > 1 || a.noise_index > 0;
  // An edit's noise follows the image's latent sample in the generator's stream, so image i of a
  // batch drawn from one seed is regenerated by running that batch (same prompt) and keeping image i.
  const bool edit_batch = noise_slice && cp.image.has_value() && !cp.control_image;
  if (edit_batch && a.noise_batch_size > 64)
    fail("[from-png] ", a.from_png, " is image ", a.noise_index, " of an img2img batch of ", a.noise_batch_size,
         " drawn from one seed; regenerating it would run the whole batch (at most 64): give --seed");
  if (noise_slice) {
    if (n_images != 1)
      fail("[from-png] ", a.from_png, " is image ", a.noise_index, " of a batch of ", a.noise_batch_size,
           " drawn from one seed and regenerates alone: drop --num-images and extra prompts, or give --seed");
  }
  if (a.guidance <= 0 && !a.negative_prompt.empty())
    std::fprintf(stderr,
                 "zimage: warning: the negative prompt is ignored: guidance is %g (classifier-free guidance is off; "
                 "give -g/--guidance > 0 to use it)\n",
                 a.guidance);

  auto t0 = std::chrono::steady_clock::now();
  ZImagePipeline pipe = ZImagePipeline::from_pretrained(a.model, po);
  pipe.set_attention_backend(a.attention);
  pipe.set_vae_tiling(tiling);
  if (edit_batch) {
    cp.num_images_per_prompt = a.noise_batch_size;
  } else if (noise_slice) {
    // diffusers: randn_tensor([B, C, h, w], generator=torch.Generator("cpu").manual_seed(seed)); take image i.
    Shape shape = pipe.latents_shape(a.noise_batch_size, a.height, a.width);
    if (shape_numel(shape) > (int64_t(1) << 28))  // 1 GiB of float32: far beyond a batch anyone generated
      fail("[from-png] ", a.from_png, ": noise_batch_size ", a.noise_batch_size, " at ", a.width, "x", a.height,
           " would draw ", shape_numel(shape), " noise values (more than 2^28)");
    random::TorchGenerator gen(cp.generator[0].seed);
    Tensor all = random::randn_tensor(shape, gen);
    cp.latents = all.slice0(a.noise_index, a.noise_index + 1).clone();
  }
  double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ProgressPrinter printer(a.quiet);
  PipelineOutput out = pipe(cp, [&](const Progress& p) { printer(p); });
  if (edit_batch) {  // keep image noise_index of the batch
    const size_t k = size_t(a.noise_index);
    out.images = {out.images.at(k)};
    out.seeds = {out.seeds.at(k)};
    out.latents = out.latents.slice0(int64_t(k), int64_t(k) + 1).clone();
  }
  for (auto& w : out.warnings) std::fprintf(stderr, "zimage: warning: %s\n", w.c_str());

  // Every output goes to a temporary file first; all are renamed into place at the end, so a
  // failure anywhere leaves none of them.
  const int n = int(out.images.size());
  const int per_prompt = a.num_images;
  const double edit_strength = a.strength.value_or(cp.mask_image ? 1.0 : 0.6);
  if (cp.image && !out.images.empty()) {  // the size the init image gave
    a.width = out.images[0].width;
    a.height = out.images[0].height;
  }
  // Without a model: the transformer file's name.
  const std::string model =
      a.model.empty() ? fs::path(a.transformer_file).stem().string() : model_name(a.model, pipe.folder());
  StagedFiles files(a.overwrite);
  std::vector<std::string> paths;
  for (int i = 0, k = 0; i < n; ++i) {
    const std::string& prompt = a.prompt[size_t(i / per_prompt)];
    std::string neg =
        a.negative_prompt.empty() ? "" : a.negative_prompt[a.negative_prompt.size() == 1 ? 0 : size_t(i / per_prompt)];
    // Where this image's initial noise sits: one generator draws the whole batch at once.
    int noise_batch = 1, noise_index = 0;
    if (noise_slice) {
      noise_batch = a.noise_batch_size;
      noise_index = a.noise_index;
    } else if (cp.generator.size() == 1) {
      noise_batch = n;
      noise_index = i;
    }
    PngMetadata meta;
    InfotextParams ip;
    ip.prompt = prompt;
    for (const auto& l : lora_meta) ip.prompt += " <lora:" + l.name + ":" + l.scale + ">";  // A1111 style
    ip.negative_prompt = a.guidance > 0 ? neg : "";
    ip.steps = a.steps;
    ip.sampler = "Euler";
    ip.cfg_scale = a.guidance;
    ip.seed = out.seeds[size_t(i)];
    ip.width = a.width;
    ip.height = a.height;
    ip.model = model;
    ip.extra = {{"Schedule type", "Flow match"}};
    if (cp.image && !cp.control_image) {
      char buf[32];  // shortest text that reads back as the same double ("0.6")
      auto r = std::to_chars(buf, buf + sizeof buf, edit_strength);
      ip.extra.push_back({"Denoising strength", std::string(buf, r.ptr)});
    }
    ip.extra.push_back({"Version", std::string("zimage.cpp ") + ZIMAGE_VERSION});
    if (!lora_meta.empty()) {  // A1111 "Lora hashes": name: first 12 hex digits of the sha256
      std::string hashes;
      for (const auto& l : lora_meta) hashes += (hashes.empty() ? "" : ", ") + l.name + ": " + l.sha256.substr(0, 12);
      ip.extra.insert(ip.extra.begin(), {"Lora hashes", hashes});
    }
    meta.parameters = ip;
    ImageRecord rec;
    rec.prompt = prompt;
    rec.negative_prompt = neg;
    rec.seed = out.seeds[size_t(i)];
    rec.noise_batch_size = noise_batch;
    rec.noise_index = noise_index;
    rec.image_index = i;
    rec.edit = cp.image && !cp.control_image;
    rec.control = cp.control_image.has_value();
    rec.strength = edit_strength;
    rec.inputs = inputs;
    for (size_t li = 0; li < lora_meta.size(); ++li)
      rec.loras.push_back({{"name", lora_meta[li].name},
                           {"path", po.loras[li].path},
                           {"sha256", lora_meta[li].sha256},
                           {"scale", po.loras[li].scale}});
    meta.zimage = record_params(a, rec);
    std::string path;
    if (a.overwrite) {
      path = numbered(a.output, i);
    } else {  // the first free name from out-i.png on, after the names taken by earlier images
      k = std::max(k, i);
      struct stat st;
      while (::lstat(numbered(a.output, k).c_str(), &st) == 0) ++k;
      path = numbered(a.output, k++);
    }
    std::vector<uint8_t> bytes = encode_png(out.images[size_t(i)], meta);
    files.add(path, bytes.data(), bytes.size());
    paths.push_back(path);
  }
  if (!a.save_latents.empty()) save_latents(files.reserve(a.save_latents), out.latents);
  files.commit();
  for (int i = 0; i < n; ++i) {
    if (!a.quiet)
      std::fprintf(stderr, "wrote %s (seed %llu)\n", paths[size_t(i)].c_str(),
                   (unsigned long long)out.seeds[size_t(i)]);
    std::printf("%s\n", paths[size_t(i)].c_str());
  }
  if (!a.quiet) {
    if (!a.save_latents.empty()) std::fprintf(stderr, "wrote %s\n", a.save_latents.c_str());
    std::fprintf(stderr,
                 "time: load %.2f s, text encoder %.2f s, denoise %.2f s (%.2f s/step), vae %.2f s, total %.2f s\n",
                 load_s, out.times.text_encoder, out.times.denoise,
                 out.times.step_seconds.empty() ? 0.0 : out.times.denoise / double(out.times.step_seconds.size()),
                 out.times.vae, out.times.total + load_s);
  }
  return 0;
}

int run_info(const GenerateArgs& a) {
  check_model_or_files(a, "[info] ", "MODEL");  // without one: every component a single file
  PretrainedOptions po;
  apply_pretrained_params(a, po, kInfo);  // --transformer, --text-encoder, --vae, --tokenizer, --controlnet
  po.local_files_only = true;             // info never downloads (`zimage pull` does)
  std::printf("%s\n", describe_model(a.model, po).c_str());
  return 0;
}

}  // namespace zimage::cli
