#include "generation_params.h"

#include <charconv>
#include <cmath>
#include <filesystem>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string_view>

#include <openssl/evp.h>

#include "core/error.h"
#include "core/file_io.h"

#ifndef ZIMAGE_VERSION
#define ZIMAGE_VERSION "unknown"
#endif

namespace zimage::cli {
namespace fs = std::filesystem;

std::string sha256_hex(const std::string& path) {
  const std::string bytes = read_regular_file(path, uint64_t(1) << 30, "[generate] ");
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!EVP_Digest(bytes.data(), bytes.size(), md, &n, EVP_sha256(), nullptr))
    fail("[generate] sha256 of '", path, "' failed");
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < n; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}

// ---- PngParams ----------------------------------------------------------------------------------

const json* PngParams::get(const char* opt, const char* key) const {
  if ((opt && given_.count(opt)) || !j_.contains(key)) return nullptr;
  return &j_.at(key);
}
void PngParams::bad(const char* key, const json& v, const std::string& expected) const {
  fail("[from-png] ", png_, ": '", key, "' is ", v.dump(-1, ' ', false, json::error_handler_t::replace), ", expected ",
       expected);
}
std::string PngParams::string(const char* key, const json& v) const {
  if (!v.is_string()) bad(key, v, "a string");
  return v.get<std::string>();
}
bool PngParams::boolean(const char* key, const json& v) const {
  if (!v.is_boolean()) bad(key, v, "true or false");
  return v.get<bool>();
}
double PngParams::number(const char* key, const json& v) const {
  if (!v.is_number() || !std::isfinite(v.get<double>())) bad(key, v, "a finite number");
  return v.get<double>();
}
uint64_t PngParams::unsigned_integer(const char* key, const json& v, uint64_t lo, uint64_t hi) const {
  const std::string expected = "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  uint64_t u = 0;
  if (v.is_number_unsigned()) {
    u = v.get<uint64_t>();
  } else if (v.is_number_integer()) {
    bad(key, v, expected);  // negative
  } else if (v.is_number_float()) {
    const double d = v.get<double>();
    // 2^64 is the first double above the uint64 range.
    if (!std::isfinite(d) || std::trunc(d) != d || d < 0 || d >= 18446744073709551616.0) bad(key, v, expected);
    u = uint64_t(d);
  } else {
    bad(key, v, expected);
  }
  if (u < lo || u > hi) bad(key, v, expected);
  return u;
}
int PngParams::integer(const char* key, const json& v, int lo, int hi) const {
  return int(unsigned_integer(key, v, uint64_t(lo), uint64_t(hi)));
}

// ---- the table ----------------------------------------------------------------------------------

namespace {

constexpr int kIntMax = std::numeric_limits<int>::max();
using A = GenerateArgs;
using T = PipelineTargets;

// An input image: the recorded file (or one of that name next to the PNG) with the recorded sha256.
void restore_input(const PngParams& P, const json& v, const char* opt, const char* key, const char* what,
                   std::string& dst) {
  if (!v.is_object() || !v.contains("file") || !v.contains("sha256")) P.bad(key, v, "{\"file\": ..., \"sha256\": ...}");
  const std::string file = P.string(key, v.at("file")), sha = P.string(key, v.at("sha256"));
  std::vector<std::string> candidates{file};
  const fs::path beside = fs::path(P.png()).parent_path() / fs::path(file).filename();
  if (beside.string() != file) candidates.push_back(beside.string());
  for (auto& c : candidates) {
    std::error_code ec;
    if (!fs::is_regular_file(c, ec)) continue;
    const std::string h = sha256_hex(c);
    if (h != sha)
      fail("[from-png] ", P.png(), ": the ", what, " '", c, "' has sha256 ", h, ", the PNG records ", sha,
           " (a different file; give ", opt, " to use it anyway)");
    dst = c;
    return;
  }
  fail("[from-png] ", P.png(), ": the ", what, " '", file, "' (sha256 ", sha, ") is missing; put it there or give ",
       opt, " FILE");
}

void record_input(const ImageRecord& img, const char* key, json& out) {
  if (img.inputs.contains(key)) out[key] = img.inputs.at(key);
}

const std::vector<GenerationParam> kParams = {
    {.flags = "-m,--model",
     .help =
         "model folder or hub id in the Hugging Face cache (required unless --from-png names one, or --transformer, "
         "--text-encoder and --vae give every component: their configs are then inferred from the files)",
     .field = &A::model,
     .key = "model",
     .library = "ZImagePipeline::from_pretrained(path)",
     .diffusers = "from_pretrained(pretrained_model_name_or_path)",
     .server = "serve option (a request's `model` is informational)",
     .infotext = "`Model` (hub id or folder name)",
     .scope = kGenerate | kServe,
     .serve_help = "model folder or hub id in the Hugging Face cache",
     .restored = true,
     .capture_default = false},
    {.flags = "-p,--prompt",
     .help = "prompt (repeat for a list of prompts)",
     .field = &A::prompt,
     .key = "prompt",
     .library = "CallParams::prompt",
     .diffusers = "prompt",
     .server = "`prompt` (its `<lora:NAME:SCALE>` tags pick LoRAs) / `prompt`",
     .infotext = "the first line (with the LoRA tags)",
     .restored = true,
     .recorded_when = "always: the image's own prompt",
     .apply = [](const A& a, T& t) { t.call.prompt = a.prompt; },
     .restore = [](const PngParams& P, const json& v, A& a) { a.prompt = {P.string("prompt", v)}; },
     .record = [](const A&, const ImageRecord& img, json& out) { out["prompt"] = img.prompt; }},
    {.flags = "--from-png",
     .help = "regenerate: take prompt, size, steps, guidance, seed, ... from a PNG written by zimage (or the A1111 "
             "'parameters' text of other PNGs); options given here win",
     .field = &A::from_png,
     .capture_default = false,
     .customize = [](CLI::Option* o) { o->check(CLI::ExistingFile); }},
    {.flags = "-n,--negative-prompt",
     .help = "negative prompt (one, or one per prompt); used only when guidance > 0",
     .field = &A::negative_prompt,
     .key = "negative_prompt",
     .library = "CallParams::negative_prompt",
     .diffusers = "negative_prompt",
     .server = "`negative_prompt` / `negative_prompt`",
     .infotext = "`Negative prompt:` line (when guidance > 0)",
     .scope = kGenerate | kServe,
     .serve_help = "default negative prompt",
     .restored = true,
     .recorded_when = "always: the image's own, \"\" when none",
     .apply = [](const A& a, T& t) { t.call.negative_prompt = a.negative_prompt; },
     .restore =
         [](const PngParams& P, const json& v, A& a) {
           std::string n = P.string("negative_prompt", v);
           a.negative_prompt = n.empty() ? std::vector<std::string>{} : std::vector<std::string>{n};
         },
     .record = [](const A&, const ImageRecord& img, json& out) { out["negative_prompt"] = img.negative_prompt; }},
    {.flags = "-W,--width",
     .help = "image width in pixels, a multiple of 16",
     .field = &A::width,
     .key = "width",
     .library = "CallParams::width",
     .diffusers = "width",
     .server = "`size` \"WxH\" (jobs also `width`) / `width`",
     .infotext = "`Size: WxH`",
     .scope = kGenerate | kServe,
     .serve_help = "default width",
     .restored = true,
     .recorded_when = "always: the output's width",
     .apply = [](const A& a, T& t) { t.call.width = a.width; },
     .restore =
         [](const PngParams& P, const json& v, A& a) {
           a.width = P.integer("width", v, 1, kIntMax);
           a.size_from_png = true;
         }},
    {.flags = "-H,--height",
     .help = "image height in pixels, a multiple of 16",
     .field = &A::height,
     .key = "height",
     .library = "CallParams::height",
     .diffusers = "height",
     .server = "`size` \"WxH\" (jobs also `height`) / `height`",
     .infotext = "`Size: WxH`",
     .scope = kGenerate | kServe,
     .serve_help = "default height",
     .restored = true,
     .recorded_when = "always: the output's height",
     .apply = [](const A& a, T& t) { t.call.height = a.height; },
     .restore =
         [](const PngParams& P, const json& v, A& a) {
           a.height = P.integer("height", v, 1, kIntMax);
           a.size_from_png = true;
         }},
    {.flags = "-s,--steps",
     .help = "number of denoising steps",
     .field = &A::steps,
     .key = "num_inference_steps",
     .library = "CallParams::num_inference_steps",
     .diffusers = "num_inference_steps",
     .server = "`steps` or `num_inference_steps` / `steps`",
     .infotext = "`Steps`",
     .scope = kGenerate | kServe,
     .serve_help = "default steps",
     .restored = true,
     .lo = 1,
     .hi = kIntMax,
     .apply = [](const A& a, T& t) { t.call.num_inference_steps = a.steps; }},
    {.flags = "-g,--guidance",
     .help = "guidance scale (0 disables classifier-free guidance)",
     .field = &A::guidance,
     .key = "guidance_scale",
     .library = "CallParams::guidance_scale",
     .diffusers = "guidance_scale",
     .server = "`guidance` or `guidance_scale` / `cfg_scale`",
     .infotext = "`CFG scale`",
     .scope = kGenerate | kServe,
     .serve_help = "default guidance scale",
     .restored = true,
     .apply = [](const A& a, T& t) { t.call.guidance_scale = float(a.guidance); }},
    {.flags = "--cfg-normalization",
     .help = "renormalise the CFG prediction to the conditional norm",
     .field = &A::cfg_normalization,
     .key = "cfg_normalization",
     .library = "CallParams::cfg_normalization",
     .diffusers = "cfg_normalization",
     .server = "`cfg_normalization` / -",
     .scope = kGenerate | kServe,
     .serve_help = "default: renormalise the CFG prediction",
     .restored = true,
     .apply = [](const A& a, T& t) { t.call.cfg_normalization = a.cfg_normalization; }},
    {.flags = "--cfg-truncation",
     .help = "disable CFG once the normalised time exceeds this value",
     .field = &A::cfg_truncation,
     .key = "cfg_truncation",
     .library = "CallParams::cfg_truncation",
     .diffusers = "cfg_truncation",
     .server = "`cfg_truncation` / -",
     .scope = kGenerate | kServe,
     .serve_help = "default CFG truncation",
     .restored = true,
     .apply = [](const A& a, T& t) { t.call.cfg_truncation = a.cfg_truncation; }},
    {.flags = "--seed",
     .help = "seed of torch.Generator(\"cpu\").manual_seed, 0..18446744073709551615; -1 (the default) = a random seed, "
             "which the PNG records; a list (1,2,3) gives each image its own generator",
     .field = &A::seed,
     .key = "seed",
     .library = "CallParams::generator",
     .diffusers = "generator",
     .server = "`seed` (one generator for the batch) / `seed` (image i: seed + i)",
     .infotext = "`Seed`",
     .restored = true,
     .recorded_when = "always: the image's generator's seed, with noise_batch_size, noise_index and image_index",
     .capture_default = false,
     .customize = [](CLI::Option* o) { o->delimiter(',')->type_name("SEED"); },
     .restore =
         [](const PngParams& P, const json& v, A& a) {
           a.seed = {std::to_string(P.unsigned_integer("seed", v, 0, std::numeric_limits<uint64_t>::max()))};
           // The seed's noise: one draw for the whole batch it was generated in (absent: a batch of one).
           if (auto* b = P.get(nullptr, "noise_batch_size"))
             a.noise_batch_size = P.integer("noise_batch_size", *b, 1, 1 << 20);
           if (auto* i = P.get(nullptr, "noise_index"))
             a.noise_index = P.integer("noise_index", *i, 0, a.noise_batch_size - 1);
         },
     .record =
         [](const A&, const ImageRecord& img, json& out) {
           out["seed"] = img.seed;
           out["noise_batch_size"] = img.noise_batch_size;
           out["noise_index"] = img.noise_index;
           out["image_index"] = img.image_index;
         }},
    {.flags = "--num-images",
     .help = "images per prompt",
     .field = &A::num_images,
     .key = "num_images_per_prompt",
     .library = "CallParams::num_images_per_prompt",
     .diffusers = "num_images_per_prompt",
     .server = "`n` / `batch_size` x `n_iter`",
     .recorded_when = "always: informative, a PNG regenerates its own image",
     .apply = [](const A& a, T& t) { t.call.num_images_per_prompt = a.num_images; }},
    {.flags = "--max-sequence-length",
     .help = "prompt token limit",
     .field = &A::max_sequence_length,
     .key = "max_sequence_length",
     .library = "CallParams::max_sequence_length",
     .diffusers = "max_sequence_length",
     .server = "serve option",
     .scope = kGenerate | kServe,
     .restored = true,
     .lo = 1,
     .hi = kIntMax,
     .apply = [](const A& a, T& t) { t.call.max_sequence_length = a.max_sequence_length; }},
    {.flags = "--dtype",
     .help = "compute dtype: bfloat16 or float32 (float16 is refused: nothing computes in it)",
     .field = &A::dtype,
     .key = "dtype",
     .library = "PretrainedOptions::torch_dtype",
     .diffusers = "torch_dtype",
     .server = "serve option",
     .scope = kGenerate | kServe,
     .serve_help = "compute dtype: bfloat16 or float32",
     .restored = true,
     .apply = [](const A& a, T& t) { t.pretrained.torch_dtype = a.dtype; }},
    {.flags = "--vae-dtype",
     .help = "VAE compute dtype: float32 or bfloat16 (bfloat16 is faster: ~1.7x with AVX-512-BF16, ~4x with AMX; its "
             "images are ~48 dB PSNR from float32's: not visible; see README)",
     .field = &A::vae_dtype,
     .key = "vae_dtype",
     .library = "PretrainedOptions::vae_dtype",
     .diffusers = "vae.to(dtype)",
     .server = "serve option",
     .scope = kGenerate | kServe,
     .restored = true,
     .apply = [](const A& a, T& t) { t.pretrained.vae_dtype = a.vae_dtype; }},
    {.flags = "--device",
     .help = "cpu or cuda",
     .field = &A::device,
     .library = "PretrainedOptions::device",
     .diffusers = ".to(device)",
     .server = "serve option",
     .scope = kGenerate | kServe,
     .apply = [](const A& a, T& t) { t.pretrained.device = a.device; }},
    {.flags = "--attention",
     .help = "attention backend (diffusers names: native, flash, _flash_3, ...)",
     .field = &A::attention,
     .library = "ZImagePipeline::set_attention_backend",
     .diffusers = "transformer.set_attention_backend",
     .server = "serve option",
     .scope = kGenerate | kServe,
     .serve_help = "attention backend"},
    {.flags = "-t,--threads",
     .help = "CPU threads: 0 = all cores, at most 4 x the hardware threads",
     .field = &A::threads,
     .library = "PretrainedOptions::num_threads",
     .diffusers = "torch.set_num_threads",
     .server = "serve option",
     .scope = kGenerate | kServe,
     .serve_help = "CPU threads of the pipeline: 0 = all cores",
     .apply = [](const A& a, T& t) { t.pretrained.num_threads = a.threads; }},
    {.flags = "-o,--output",
     .help =
         "output PNG; several images are numbered out.png, out-1.png, ...; taken names are skipped unless --overwrite. "
         "All outputs (PNGs, --save-latents) are written, or none",
     .field = &A::output},
    {.flags = "--overwrite", .help = "replace existing output files (PNG and --save-latents)", .field = &A::overwrite},
    {.flags = "-q,--quiet", .help = "no progress output", .field = &A::quiet},
    {.flags = "--local-files-only",
     .help = "never download: a hub id must be complete in the cache (as HF_HUB_OFFLINE=1)",
     .field = &A::local_files_only,
     .library = "PretrainedOptions::local_files_only",
     .diffusers = "local_files_only",
     .server = "serve option",
     .scope = kGenerate | kServe,
     .serve_help = "never download a hub id",
     .apply = [](const A& a, T& t) { t.pretrained.local_files_only = a.local_files_only; }},
    {.flags = "--transformer",
     .help = "transformer weights from this .safetensors or .gguf file (diffusers names; GGUF may be quantized) "
             "instead of the model's",
     .field = &A::transformer_file,
     .key = "transformer_file",
     .library = "PretrainedOptions::transformer_file",
     .diffusers = "ZImageTransformer2DModel.from_single_file",
     .server = "serve option",
     .scope = kGenerate | kServe | kInfo,
     .restored = true,
     .recorded_when = "when given",
     .capture_default = false,
     .apply = [](const A& a, T& t) { t.pretrained.transformer_file = a.transformer_file; },
     .record =
         [](const A& a, const ImageRecord&, json& out) {
           if (!a.transformer_file.empty()) out["transformer_file"] = a.transformer_file;
         }},
    {.flags = "--text-encoder",
     .help = "Qwen3 text encoder weights from this .safetensors or .gguf file (transformers or llama.cpp names) "
             "instead of the model's",
     .field = &A::text_encoder_file,
     .key = "text_encoder_file",
     .library = "PretrainedOptions::text_encoder_file",
     .diffusers = "text_encoder=...",
     .server = "serve option",
     .scope = kGenerate | kServe | kInfo,
     .restored = true,
     .recorded_when = "when given",
     .capture_default = false,
     .apply = [](const A& a, T& t) { t.pretrained.text_encoder_file = a.text_encoder_file; },
     .record =
         [](const A& a, const ImageRecord&, json& out) {
           if (!a.text_encoder_file.empty()) out["text_encoder_file"] = a.text_encoder_file;
         }},
    {.flags = "--vae",
     .help = "VAE weights from this .safetensors file (diffusers names, or the original LDM/Flux layout of "
             "ae.safetensors) instead "
             "of the model's; without -m its latents must have 16 channels and take the Flux VAE's scaling 0.3611 / "
             "shift 0.1159",
     .field = &A::vae_file,
     .key = "vae_file",
     .library = "PretrainedOptions::vae_file",
     .diffusers = "AutoencoderKL.from_single_file",
     .server = "serve option",
     .scope = kGenerate | kServe | kInfo,
     .restored = true,
     .recorded_when = "when given",
     .capture_default = false,
     .apply = [](const A& a, T& t) { t.pretrained.vae_file = a.vae_file; },
     .record =
         [](const A& a, const ImageRecord&, json& out) {
           if (!a.vae_file.empty()) out["vae_file"] = a.vae_file;
         }},
    {.flags = "--tokenizer",
     .help = "a tokenizer/ folder (tokenizer.json + tokenizer_config.json) instead of the model's; without -m it is "
             "needed for a "
             ".safetensors --text-encoder (a GGUF one carries its tokenizer)",
     .field = &A::tokenizer,
     .key = "tokenizer",
     .library = "PretrainedOptions::tokenizer",
     .diffusers = "tokenizer=...",
     .server = "serve option",
     .scope = kGenerate | kServe | kInfo,
     .restored = true,
     .recorded_when = "when given",
     .capture_default = false,
     .apply = [](const A& a, T& t) { t.pretrained.tokenizer = a.tokenizer; },
     .record =
         [](const A& a, const ImageRecord&, json& out) {
           if (!a.tokenizer.empty()) out["tokenizer"] = a.tokenizer;
         }},
    {.flags = "--lora",
     .help =
         "LoRA for the transformer, FILE[:SCALE] (default scale 1; repeatable): diffusers/PEFT, kohya lora_unet_ or "
         "diffusion_model. keys (.safetensors); see --lora-mode",
     .field = &A::lora,
     .key = "loras",
     .library = "PretrainedOptions::loras",
     .diffusers = "load_lora_weights + set_adapters",
     .server = "prompt tags `<lora:NAME:SCALE>` (serve `--lora`, `--lora-dir`)",
     .infotext = "`<lora:NAME:SCALE>` in the prompt, `Lora hashes`",
     .scope = kGenerate | kServe,
     .serve_help =
         "LoRA for every request, FILE[:SCALE] (repeatable); a prompt's <lora:NAME:SCALE> (NAME: the file's stem) "
         "changes its scale for that request (0: off). Run at run time (adjustable scales)",
     .restored = true,
     .recorded_when = "with a LoRA: [{name, path, sha256, scale}, ...]; the A1111 prompt gets <lora:NAME:SCALE>",
     .capture_default = false,
     .restore =
         [](const PngParams& P, const json& v, A& a) {  // [{name, path, sha256, scale}, ...]: the same files again
           if (!v.is_array()) fail("[from-png] ", P.png(), ": 'loras' is ", v.dump(), ", expected a list");
           a.lora.clear();
           for (const auto& l : v) {
             if (!l.is_object() || !l.contains("path") || !l.contains("scale"))
               fail("[from-png] ", P.png(), ": 'loras' entry ", l.dump(), " lacks a path or scale");
             char buf[64];
             auto r = std::to_chars(buf, buf + sizeof buf, P.number("scale", l["scale"]));
             a.lora.push_back(P.string("path", l["path"]) + ":" + std::string(buf, r.ptr));
           }
         },
     .record =
         [](const A&, const ImageRecord& img, json& out) {
           if (!img.loras.empty()) out["loras"] = img.loras;
         }},
    {.flags = "--lora-mode",
     .help = "merge: LoRAs merged into the weights at load (no cost per step; a quantized GGUF weight runs its LoRA at "
             "run time); runtime: every LoRA runs as a branch next to the weight, as diffusers/PEFT do",
     .field = &A::lora_mode,
     .key = "lora_mode",
     .library = "PretrainedOptions::lora_mode",
     .diffusers = "(fuse_lora or not)",
     .restored = true,
     .recorded_when = "with a LoRA",
     .apply = [](const A& a, T& t) { t.pretrained.lora_mode = a.lora_mode; },
     .record =
         [](const A& a, const ImageRecord& img, json& out) {
           if (!img.loras.empty()) out["lora_mode"] = a.lora_mode;
         }},
    {.flags = "--low-memory",
     .help = "load one component at a time (peak memory = largest component)",
     .field = &A::low_memory,
     .library = "PretrainedOptions::low_memory",
     .diffusers = "enable_sequential_cpu_offload (akin)",
     .server = "serve option",
     .scope = kGenerate | kServe,
     .serve_help = "load one component at a time",
     .apply = [](const A& a, T& t) { t.pretrained.low_memory = a.low_memory; }},
    {.flags = "--vae-tiling",
     .help = "tiled VAE decode: auto (when the untiled decode would not fit in half the memory), on, off",
     .field = &A::vae_tiling,
     .key = "vae_tiling",
     .library = "VaeTilingOptions::tiling",
     .diffusers = "vae.enable_tiling",
     .server = "serve option",
     .scope = kGenerate | kServe,
     .serve_help = "auto, on or off",
     .restored = true,
     .apply = [](const A& a, T& t) { t.tiling.tiling = a.vae_tiling; }},
    {.flags = "--vae-tile-mode",
     .help = "seamless (whole-image statistics, close to untiled) or diffusers (AutoencoderKL.tiled_decode exactly)",
     .field = &A::vae_tile_mode,
     .key = "vae_tile_mode",
     .library = "VaeTilingOptions::mode",
     .diffusers = "vae.tiled_decode",
     .server = "serve option",
     .scope = kGenerate | kServe,
     .serve_help = "seamless or diffusers",
     .restored = true,
     .apply = [](const A& a, T& t) { t.tiling.mode = a.vae_tile_mode; }},
    {.flags = "--vae-tile-size",
     .help = "VAE tile size in latent pixels (x8 image pixels); 0 = automatic",
     .field = &A::vae_tile_size,
     .key = "vae_tile_size",
     .library = "VaeTilingOptions::tile_size",
     .diffusers = "vae.tile_latent_min_size",
     .server = "serve option",
     .scope = kGenerate | kServe,
     .serve_help = "VAE tile size in latent pixels; 0 = automatic",
     .restored = true,
     .lo = 0,
     .hi = kIntMax,
     .apply = [](const A& a, T& t) { t.tiling.tile_size = a.vae_tile_size; }},
    {.flags = "--init-image",
     .help = "img2img: start from this PNG or JPEG (sides multiples of 16; the output has its size)",
     .field = &A::init_image,
     .key = "init_image",
     .library = "CallParams::image",
     .diffusers = "image",
     .server = "edits: `image` / img2img: `init_images`",
     .restored = true,
     .recorded_when = "img2img, inpainting, ControlNet inpainting: {file, sha256}",
     .capture_default = false,
     .restore = [](const PngParams& P, const json& v,
                   A& a) { restore_input(P, v, "--init-image", "init_image", "init image", a.init_image); },
     .record = [](const A&, const ImageRecord& img, json& out) { record_input(img, "init_image", out); }},
    {.flags = "--strength",
     .help = "img2img/inpaint: how much of the init image is re-noised, in [0, 1] (default 0.6; with --mask 1.0); only "
             "steps x strength steps run",
     .field = &A::strength,
     .key = "strength",
     .library = "CallParams::strength",
     .diffusers = "strength",
     .server = "edits: `strength` / img2img: `denoising_strength`",
     .infotext = "`Denoising strength`",
     .restored = true,
     .recorded_when = "img2img and inpainting (the strength that ran)",
     .capture_default = false,
     .apply = [](const A& a, T& t) { t.call.strength = a.strength; },
     .record =
         [](const A&, const ImageRecord& img, json& out) {
           if (img.edit) out["strength"] = img.strength;
         }},
    {.flags = "--mask",
     .help = "inpaint: mask PNG or JPEG, the init image's size; white (>= 128 gray) is repainted, black kept",
     .field = &A::mask,
     .key = "mask_image",
     .library = "CallParams::mask_image",
     .diffusers = "mask_image",
     .server = "`mask` / `mask`",
     .restored = true,
     .recorded_when = "inpainting: {file, sha256}",
     .capture_default = false,
     .restore = [](const PngParams& P, const json& v,
                   A& a) { restore_input(P, v, "--mask", "mask_image", "mask image", a.mask); },
     .record = [](const A&, const ImageRecord& img, json& out) { record_input(img, "mask_image", out); }},
    {.flags = "--control-image",
     .help =
         "ControlNet: control image (PNG or JPEG), resized to the output size (default: its own size, rounded down to "
         "multiples of 16); with --init-image and --mask: ControlNet inpainting",
     .field = &A::control_image,
     .key = "control_image",
     .library = "CallParams::control_image",
     .diffusers = "control_image",
     .restored = true,
     .recorded_when = "ControlNet: {file, sha256}",
     .capture_default = false,
     .restore = [](const PngParams& P, const json& v,
                   A& a) { restore_input(P, v, "--control-image", "control_image", "control image", a.control_image); },
     .record = [](const A&, const ImageRecord& img, json& out) { record_input(img, "control_image", out); }},
    {.flags = "--controlnet",
     .help = "ControlNet: a diffusers ZImageControlNetModel folder (config.json + diffusion_pytorch_model.safetensors) "
             "or a single .safetensors file (e.g. alibaba-pai's Union 1.0 / 2.x; its config inferred from the tensors)",
     .field = &A::controlnet,
     .key = "controlnet",
     .library = "PretrainedOptions::controlnet",
     .diffusers = "ZImageControlNetPipeline(controlnet=...)",
     .scope = kGenerate | kInfo,
     .restored = true,
     .recorded_when = "ControlNet",
     .capture_default = false,
     .apply = [](const A& a, T& t) { t.pretrained.controlnet = a.controlnet; },
     .record =
         [](const A& a, const ImageRecord& img, json& out) {
           if (img.control) out["controlnet"] = a.controlnet;
         }},
    {.flags = "--control-scale",
     .help = "ControlNet: controlnet_conditioning_scale (default 0.75)",
     .field = &A::control_scale,
     .key = "controlnet_conditioning_scale",
     .library = "CallParams::controlnet_conditioning_scale",
     .diffusers = "controlnet_conditioning_scale",
     .restored = true,
     .recorded_when = "ControlNet (the scale that ran)",
     .capture_default = false,
     .apply = [](const A& a, T& t) { t.call.controlnet_conditioning_scale = a.control_scale; },
     .record =
         [](const A& a, const ImageRecord& img, json& out) {
           if (img.control) out["controlnet_conditioning_scale"] = a.control_scale.value_or(0.75);
         }},
    {.flags = "--save-latents",
     .help = "also write the final latents to this .safetensors file (an existing file needs --overwrite)",
     .field = &A::save_latents,
     .diffusers = "output_type=\"latent\"",
     .capture_default = false},
};

std::string default_text(const GenerationParam& p) {
  static const GenerateArgs defaults;
  return std::visit(
      [&](auto m) -> std::string {
        using M = decltype(m);
        if constexpr (std::is_same_v<M, std::monostate>) {
          return "";
        } else {
          const auto& v = defaults.*m;
          using V = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<V, std::string>) {
            return v.empty() ? "" : "`" + v + "`";
          } else if constexpr (std::is_same_v<V, bool>) {
            return v ? "on" : "off";
          } else if constexpr (std::is_same_v<V, std::vector<std::string>> ||
                               std::is_same_v<V, std::optional<double>>) {
            return "";
          } else {
            std::ostringstream os;
            os << v;
            return os.str();
          }
        }
      },
      p.field);
}

}  // namespace

std::string GenerationParam::long_name() const {
  std::string f = flags;
  size_t at = f.find("--");
  if (at == std::string::npos) throw std::logic_error("generation parameter without a long option: " + f);
  size_t end = f.find(',', at);
  return f.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

const std::vector<GenerationParam>& generation_params() { return kParams; }

const GenerationParam& generation_param(const std::string& long_name) {
  for (const auto& p : kParams)
    if (p.long_name() == long_name) return p;
  throw std::out_of_range("no generation parameter " + long_name);
}

void add_param_options(CLI::App& app, GenerateArgs& a, ParamScope scope) {
  for (const auto& p : kParams) {
    if (!(p.scope & scope)) continue;
    const std::string help = scope == kServe && p.serve_help ? p.serve_help : p.help;
    CLI::Option* o = std::visit(
        [&](auto m) -> CLI::Option* {
          using M = decltype(m);
          if constexpr (std::is_same_v<M, std::monostate>) {
            throw std::logic_error(std::string("generation parameter without a field: ") + p.flags);
          } else if constexpr (std::is_same_v<M, bool GenerateArgs::*>) {
            return app.add_flag(p.flags, a.*m, help);
          } else {
            return app.add_option(p.flags, a.*m, help);
          }
        },
        p.field);
    const bool scalar = !std::holds_alternative<bool GenerateArgs::*>(p.field) &&
                        !std::holds_alternative<std::vector<std::string> GenerateArgs::*>(p.field) &&
                        !std::holds_alternative<std::optional<double> GenerateArgs::*>(p.field);
    if (p.capture_default && scalar) o->capture_default_str();
    if (p.customize) p.customize(o);
  }
}

void apply_params(const GenerateArgs& a, PipelineTargets& t) {
  for (const auto& p : kParams)
    if (p.apply) p.apply(a, t);
}

void apply_pretrained_params(const GenerateArgs& a, PretrainedOptions& po, ParamScope scope) {
  CallParams call;
  VaeTilingOptions tiling;
  PipelineTargets t{po, call, tiling};
  for (const auto& p : kParams)
    if ((p.scope & scope) && p.apply && std::string_view(p.library).rfind("PretrainedOptions::", 0) == 0) p.apply(a, t);
}

std::map<std::string, std::string> record_model_files(const GenerateArgs& a) {
  json out = json::object();
  for (const auto& p : kParams)
    if ((p.scope & kServe) && (p.scope & kInfo) && p.record) p.record(a, ImageRecord{}, out);
  std::map<std::string, std::string> files;
  for (auto& [key, v] : out.items()) files[key] = v.get<std::string>();
  return files;
}

void check_model_or_files(const GenerateArgs& a, const char* tag, const char* model_opt) {
  if (!a.model.empty()) return;
  if (a.transformer_file.empty() && a.text_encoder_file.empty() && a.vae_file.empty())
    fail(tag, "no model: give ", model_opt,
         ", or every component as a single file (--transformer, --text-encoder, --vae)");
  std::string missing;
  using File = std::pair<const std::string*, const char*>;
  for (const File& e : {File{&a.transformer_file, "--transformer"}, File{&a.text_encoder_file, "--text-encoder"},
                        File{&a.vae_file, "--vae"}})
    if (e.first->empty()) {
      if (!missing.empty()) missing += ", ";
      missing += e.second;
    }
  const std::string opt = model_opt, short_opt = opt.substr(0, opt.find('/'));  // "-m/--model" -> "-m"
  if (!missing.empty())
    fail(tag, "no model (", short_opt, "): every component must then be a single file; missing ", missing);
}

json record_params(const GenerateArgs& a, const ImageRecord& img) {
  json out = json::object();
  for (const auto& p : kParams) {
    if (!p.key) continue;
    if (p.record) {
      p.record(a, img, out);
      continue;
    }
    std::visit(
        [&](auto m) {
          using M = decltype(m);
          if constexpr (std::is_same_v<M, std::monostate> ||
                        std::is_same_v<M, std::vector<std::string> GenerateArgs::*>) {
            throw std::logic_error(std::string("generation parameter ") + p.flags + " needs its own record function");
          } else if constexpr (std::is_same_v<M, std::optional<double> GenerateArgs::*>) {
            if (a.*m) out[p.key] = *(a.*m);
          } else {
            out[p.key] = a.*m;
          }
        },
        p.field);
  }
  out["generator"] = "torch.Generator(\"cpu\")";
  out["version"] = std::string("zimage.cpp ") + ZIMAGE_VERSION;
  return out;
}

void restore_params(const PngParams& P, const json& j, GenerateArgs& a) {
  (void)j;
  for (const auto& p : kParams) {
    if (!p.key || !p.restored) continue;
    const std::string name = p.long_name();
    const json* v = P.get(name.c_str(), p.key);
    if (!v) continue;
    if (p.restore) {
      p.restore(P, *v, a);
      continue;
    }
    std::visit(
        [&](auto m) {
          using M = decltype(m);
          if constexpr (std::is_same_v<M, std::string GenerateArgs::*>) {
            a.*m = P.string(p.key, *v);
          } else if constexpr (std::is_same_v<M, int GenerateArgs::*>) {
            a.*m = P.integer(p.key, *v, p.lo, p.hi);
          } else if constexpr (std::is_same_v<M, double GenerateArgs::*> ||
                               std::is_same_v<M, std::optional<double> GenerateArgs::*>) {
            a.*m = P.number(p.key, *v);
          } else if constexpr (std::is_same_v<M, bool GenerateArgs::*>) {
            a.*m = P.boolean(p.key, *v);
          } else {
            throw std::logic_error(std::string("generation parameter ") + p.flags + " needs its own restore function");
          }
        },
        p.field);
  }
}

std::string params_markdown() {
  std::string md =
      "# Generation parameters\n\n"
      "<!-- Generated by `zimage params` from tools/cli/generation_params.cpp; a test keeps them equal. -->\n\n"
      "One table in the code (tools/cli/generation_params.cpp) drives the options of `zimage generate` (and the\n"
      "defaults `zimage serve` takes), the PNG metadata (the `zimage` JSON text chunk), `--from-png` and the\n"
      "library call. \"PNG key\" is the metadata key; \"--from-png\" says whether regenerating from a PNG\n"
      "restores it (an option given on the command line always wins). Options without a PNG key do not\n"
      "change the pixels (where the file goes, how fast it runs) or are recorded elsewhere.\n\n"
      "| option | default | PNG key (when recorded) | A1111 infotext | --from-png | library | diffusers | server "
      "request (JSON / sdapi) |\n"
      "|---|---|---|---|---|---|---|---|\n";
  auto cell = [](std::string s) {
    std::string out;
    for (char c : s) out += c == '|' ? std::string("\\|") : std::string(1, c);
    return out;
  };
  for (const auto& p : kParams) {
    std::string key =
        p.key ? "`" + std::string(p.key) + "`" +
                    (std::string(p.recorded_when) == "always" ? "" : " (" + std::string(p.recorded_when) + ")")
              : "";
    md += "| `" + std::string(p.flags) + "` | " + cell(default_text(p)) + " | " + cell(key) + " | " + cell(p.infotext) +
          " | " + (p.key && p.restored ? "yes" : "") + " | " + (*p.library ? "`" + std::string(p.library) + "`" : "") +
          " | " + (*p.diffusers ? "`" + cell(p.diffusers) + "`" : "") + " | " + cell(p.server) + " |\n";
  }
  md +=
      "\nAlso recorded: `generator` (`torch.Generator(\"cpu\")`) and `version`. A PNG without a `zimage` chunk\n"
      "is read from its A1111 `parameters` text: prompt, negative prompt, Steps, CFG scale, Seed, Size, Model.\n\n"
      "Server columns: **JSON** = `POST /v1/jobs`, `POST /v1/images/generations` (OpenAI) and the multipart fields\n"
      "of `POST /v1/images/edits`; **sdapi** = `POST /sdapi/v1/txt2img` and `img2img` (A1111). \"serve option\": set\n"
      "once for the server by the same option of `zimage serve`; a request cannot change it.\n\n"
      "API-only call parameters: `CallParams::sigmas`, `latents`, `prompt_embeds`, `negative_prompt_embeds`,\n"
      "`output_type`, `callback_on_step_end` and `masked_image_latents` are diffusers' call arguments of the same\n"
      "names; they have no CLI option, server field or PNG key.\n";
  return md;
}

json params_json() {
  json rows = json::array();
  for (const auto& p : kParams)
    rows.push_back({{"option", p.long_name()},
                    {"flags", p.flags},
                    {"key", p.key ? json(p.key) : json(nullptr)},
                    {"recorded_when", p.key ? json(p.recorded_when) : json(nullptr)},
                    {"restored", p.key && p.restored},
                    {"serve", (p.scope & kServe) != 0}});
  return rows;
}

}  // namespace zimage::cli
