// ZImagePipeline: the only place the stages meet. Follows diffusers'
// pipelines/z_image/pipeline_z_image.py (__call__, encode_prompt, prepare_latents).
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "core/config.h"
#include "core/mapping.h"
#include "image/image_processor.h"
#include "image/postprocess.h"
#include "ops/ops.h"
#include "ops/quantized.h"
#include "pipeline/model_configs.h"
#include "pipeline/model_folder.h"
#include "pipeline/pipeline_internal.h"
#include "pipeline/single_file.h"
#include "random/randn_tensor.h"
#include "scheduler/flow_match_euler.h"
#include "text_encoder/qwen3_text_encoder.h"
#include "tokenizer/tokenizer.h"
#include "transformer/transformer_z_image.h"
#include "vae/autoencoder_kl.h"
#include "zimage/pipeline.h"

namespace zimage {

using scheduler::FlowMatchEulerConfig;
using scheduler::FlowMatchEulerDiscreteScheduler;

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Attention backends by diffusers' names. All run the same flash-style CPU kernel here; names
// that need a GPU are refused on a CPU pipeline.
bool cpu_attention_name(const std::string& n) {
  return n == "native" || n == "_native_math" || n == "_native_flash" || n == "_native_efficient" || n == "default";
}
bool known_attention_name(const std::string& n) {
  return cpu_attention_name(n) || n == "flash" || n == "_flash_3" || n == "flash_varlen" || n == "_flash_varlen_3" ||
         n == "sage" || n == "xformers" || n == "_native_cudnn" || n == "flex";
}

VaeDecodeOptions vae_decode_options(const VaeTilingOptions& o) {
  VaeDecodeOptions d;
  d.tiling = o.tiling == "on"    ? VaeDecodeOptions::Tiling::On
             : o.tiling == "off" ? VaeDecodeOptions::Tiling::Off
                                 : VaeDecodeOptions::Tiling::Auto;
  d.tile_mode = o.mode == "diffusers" ? VaeDecodeOptions::TileMode::Diffusers : VaeDecodeOptions::TileMode::Seamless;
  d.tile_latent_size = o.tile_size;
  d.memory_budget_bytes = size_t(o.memory_budget_gb * 1e9);
  return d;
}
}  // namespace

struct ZImagePipeline::Impl {
  std::string folder;  // "" when loaded from single files (no model folder)
  ModelIndex index;
  ModelConfigs cfgs;  // the folder's configs, or those inferred from the single files
  std::string dir(const char* component) const {
    return folder.empty() ? std::string() : index.component_dir(component);
  }
  PretrainedOptions opts;
  DType compute = DType::BF16, vae_compute = DType::F32;
  std::string attention = "native";
  VaeTilingOptions vae_tiling;
  std::atomic<bool> interrupted{false};
  // One call at a time: the components hold per-call state (planned activation buffers, the
  // transformer's caption cache, lazily loaded or released weights), so concurrent calls on one
  // pipeline are serialised here. `owner` lets a callback that re-enters get an error, not a deadlock.
  std::mutex call_mutex;
  std::atomic<std::thread::id> owner{};
  std::unique_lock<std::mutex> lock_for(const char* what) {
    if (owner.load() == std::this_thread::get_id())
      fail("[pipeline] ", what, " was called from inside a running call of the same pipeline (e.g. from its callback)");
    return std::unique_lock<std::mutex>(call_mutex);
  }

  // Cheap facts read from the configs at load time (for validation before any weights are used).
  int64_t vae_scale_factor = 8, in_channels = 16, cap_dim = 0, max_positions = 0;
  std::optional<FlowMatchEulerConfig> scheduler_cfg;
  std::optional<ZImageTransformerConfig> transformer_cfg;

  // The attached ControlNet (its folder and config; the weights, loaded with the transformer).
  std::string controlnet_dir;
  std::optional<ZImageControlNetConfig> controlnet_cfg;
  std::optional<ZImageControlNetModel> controlnet;

  std::optional<Qwen2Tokenizer> tokenizer;
  std::optional<Qwen3TextEncoder> text_encoder;
  std::optional<ZImageTransformer2DModel> transformer;
  std::optional<AutoencoderKL> vae;

  Qwen3TextEncoder& te() {
    if (!text_encoder)
      text_encoder =
          Qwen3TextEncoder::load_with_config(cfgs.text_encoder, dir("text_encoder"), compute, opts.text_encoder_file);
    return *text_encoder;
  }
  // LoRA adapters in load order: merged ones go into the transformer's weights when it loads,
  // run-time ones are attached to its slots (again after every reload).
  struct Adapter {
    std::string name, path;
    double scale = 1.0;
    bool active = true, merged = false;
    std::shared_ptr<const weights::LoraSet> set;  // run-time adapters: read once
  };
  std::vector<Adapter> adapters;
  std::vector<TensorSpec> transformer_specs;
  Adapter* find_adapter(const std::string& name) {
    for (auto& a : adapters)
      if (a.name == name) return &a;
    return nullptr;
  }
  std::string adapter_names() const {
    std::string s;
    for (auto& a : adapters) s += (s.empty() ? "'" : ", '") + a.name + "'";
    return s.empty() ? "none" : s;
  }
  Adapter make_adapter(const std::string& path, double scale, const std::string& name, bool merged) {
    if (path.empty()) fail("[lora] a LoRA has an empty file name");
    if (!std::isfinite(scale)) fail("[lora] ", path, ": scale ", scale, " is not a finite number");
    Adapter a{name.empty() ? weights::lora_stem(path) : name, path, scale, true, merged, nullptr};
    if (const Adapter* b = find_adapter(a.name))
      fail("[lora] adapter name '", a.name, "' (", path, ") is already loaded (", b->path,
           "): delete it first or give another adapter name");
    if (merged)  // read here too, so a bad file fails now, not at the transformer's (re)load
      weights::LoraSet::load({{path, scale, a.name}}, transformer_specs);
    else
      a.set =
          std::make_shared<const weights::LoraSet>(weights::LoraSet::load({{path, scale, a.name}}, transformer_specs));
    return a;
  }
  void attach(const Adapter& a) {
    a.set->attach(transformer->lora_slots());
    weights::set_adapter_scale(transformer->lora_slots(), a.name, a.scale, a.active);
    transformer->lora_changed();
  }

  void remove_adapters(const std::vector<std::string>& names, const char* what) {
    bool reload = false;
    for (const auto& n : names) {
      const Adapter* a = find_adapter(n);
      if (!a) fail("[lora] ", what, ": no adapter named '", n, "' (loaded: ", adapter_names(), ")");
      reload |= a->merged;
    }
    for (const auto& n : names) {
      if (transformer && !reload) weights::detach_adapter(transformer->lora_slots(), n);
      std::erase_if(adapters, [&](const Adapter& a) { return a.name == n; });
    }
    if (!transformer) return;
    if (reload) {  // a merged LoRA is in the weights: load them again without it
      transformer.reset();
      if (!opts.low_memory) dit();
    } else {
      transformer->lora_changed();
    }
  }

  ZImageTransformer2DModel& dit() {
    if (!transformer) {
      std::vector<weights::LoraSpec> merged;
      for (auto& a : adapters)
        if (a.merged) merged.push_back({a.path, a.scale, a.name});
      transformer = ZImageTransformer2DModel::load_with_config(cfgs.transformer, dir("transformer"), compute,
                                                               opts.transformer_file, merged);
      for (auto& a : adapters)
        if (!a.merged) attach(a);
    }
    return *transformer;
  }
  ZImageControlNetModel& cnet() {
    if (!controlnet)
      controlnet = ZImageControlNetModel::load(controlnet_dir, *controlnet_cfg, compute, *transformer_cfg);
    return *controlnet;
  }
  // A diffusers folder (config.json + weights) or one file (its config inferred for the loaded
  // transformer: pipeline/single_file.h).
  void attach_controlnet(const std::string& path) {
    std::error_code ec;
    ZImageControlNetConfig c;
    if (std::filesystem::is_regular_file(path, ec)) {
      c = infer_controlnet_config(path, *transformer_cfg);  // checks the tensors' headers too
    } else {
      if (!std::filesystem::is_directory(path, ec))
        fail("[controlnet] '", path, "' does not exist (a ZImageControlNetModel folder or a .safetensors file)");
      c = ZImageControlNetConfig::load(path + "/config.json");
      c.check_compatible(*transformer_cfg, path + "/config.json");
      if (opts.low_memory) ZImageControlNetModel::open_weights(path, c, *transformer_cfg);
    }
    if (opts.low_memory)  // loaded per call (the headers were checked above)
      controlnet.reset();
    else
      controlnet = ZImageControlNetModel::load(path, c, compute, *transformer_cfg);
    controlnet_dir = path;
    controlnet_cfg = c;
  }
  AutoencoderKL& autoencoder() {
    if (!vae) vae = AutoencoderKL::load_with_config(cfgs.vae, dir("vae"), vae_compute, opts.vae_file);
    return *vae;
  }

  std::vector<Tensor> encode(const std::vector<std::string>& prompts, int max_len, std::vector<std::string>& warnings) {
    // The text encoder runs once per prompt: its quantized weights are packed for one GEMM at a
    // time, never kept (ops/quantized.h), so it holds no packed copy between calls.
    const ops::TransientPacking transient;
    std::vector<Tensor> out;
    for (auto& p : prompts) {
      TokenizedPrompt tp = tokenizer->encode_prompt(p, max_len);
      if (tp.num_dropped > 0)
        warnings.push_back("prompt truncated to " + std::to_string(max_len) +
                           " tokens: " + std::to_string(tp.num_dropped) + " tokens dropped");
      out.push_back(te().encode(tp.input_ids, tp.num_real));
    }
    return out;
  }

  PipelineOutput call(ZImagePipeline& self, const CallParams& p, const ProgressFn& progress);
};

ZImagePipeline::ZImagePipeline() : impl_(std::make_unique<Impl>()) {}
ZImagePipeline::ZImagePipeline(ZImagePipeline&&) noexcept = default;
ZImagePipeline& ZImagePipeline::operator=(ZImagePipeline&&) noexcept = default;
ZImagePipeline::~ZImagePipeline() = default;

ZImagePipeline ZImagePipeline::from_pretrained(const std::string& path_or_id, const PretrainedOptions& o) {
  validate_pretrained_options(o);
  if (!o.use_safetensors) fail("[from_pretrained] use_safetensors=false: only safetensors weights are supported");
  ResolveOptions ro;
  ro.revision = o.revision;
  ro.subfolder = o.subfolder;
  ro.cache_dir = o.cache_dir;
  ro.local_files_only = o.local_files_only;
  ro.force_download = o.force_download;
  ro.token = o.token;
  ZImagePipeline pipe;
  Impl& m = *pipe.impl_;
  m.opts = o;
  if (!path_or_id.empty()) {
    m.folder = resolve_model_folder(path_or_id, ro);
    m.index = read_model_index(m.folder);
  } else {  // single files: every component's weights given, their configs inferred (pipeline/single_file.h)
    check_single_file_options(o);
  }
  m.compute = parse_dtype(o.torch_dtype);  // bfloat16 or float32 (validate_pretrained_options)
  m.vae_compute = parse_dtype(o.vae_dtype) == DType::BF16 ? DType::BF16 : DType::F32;
  pipe.to(o.device);
  ops::set_num_threads(o.num_threads);

  // Every config is parsed and validated (and the tokenizer loaded) before anything uses a value.
  if (m.folder.empty()) {
    m.cfgs.transformer = infer_transformer_config(o.transformer_file);
    m.cfgs.text_encoder = infer_text_encoder_config(o.text_encoder_file);
    m.cfgs.vae = infer_vae_config(o.vae_file);
    m.cfgs.scheduler = zimage_turbo_scheduler_config();
    check_model_configs(m.cfgs, "[from_pretrained] ");
  } else {
    m.cfgs = read_model_configs(m.index);
  }
  const ModelConfigs& cfgs = m.cfgs;
  m.vae_scale_factor = cfgs.vae.spatial_scale();
  m.in_channels = cfgs.transformer.in_channels;
  m.cap_dim = cfgs.transformer.cap_feat_dim;
  m.max_positions = cfgs.text_encoder.max_position_embeddings;
  m.scheduler_cfg = cfgs.scheduler;
  m.transformer_cfg = cfgs.transformer;
  if (!o.controlnet.empty()) m.attach_controlnet(o.controlnet);  // a mismatch fails before the base model loads
  m.tokenizer = !o.tokenizer.empty() ? Qwen2Tokenizer::from_folder(o.tokenizer)
                : m.folder.empty()   ? Qwen2Tokenizer::from_gguf(o.text_encoder_file)
                                     : Qwen2Tokenizer::from_folder(m.index.component_dir("tokenizer"));
  m.transformer_specs = ZImageTransformer2DModel::expected_tensors(cfgs.transformer);
  for (const auto& l : o.loras) m.adapters.push_back(m.make_adapter(l.path, l.scale, l.name, o.lora_mode == "merge"));
  if (!o.low_memory) {  // load once, reuse across calls
    m.te();
    m.dit();
    m.autoencoder();
  } else {  // loaded per call: check the weights' headers now, so a broken folder fails here
    Qwen3TextEncoder::open_weights(m.dir("text_encoder"), cfgs.text_encoder, nullptr, o.text_encoder_file);
    ZImageTransformer2DModel::open_weights(m.dir("transformer"), cfgs.transformer, o.transformer_file);
    AutoencoderKL::open_weights(m.dir("vae"), cfgs.vae, o.vae_file);
  }
  return pipe;
}

void ZImagePipeline::load_lora_weights(const std::string& path, const std::string& adapter_name, double scale) {
  auto lock = impl_->lock_for("load_lora_weights()");
  Impl& m = *impl_;
  m.adapters.push_back(m.make_adapter(path, scale, adapter_name, /*merged=*/false));
  if (m.transformer) m.attach(m.adapters.back());
}

void ZImagePipeline::set_adapters(const std::vector<std::string>& names, const std::vector<double>& weights) {
  auto lock = impl_->lock_for("set_adapters()");
  Impl& m = *impl_;
  if (weights.size() > 1 && weights.size() != names.size())
    fail("[lora] set_adapters: ", names.size(), " adapter names but ", weights.size(),
         " weights (give one per name, one for all, or none)");
  std::map<std::string, double> want;
  for (size_t i = 0; i < names.size(); ++i) {
    const double w = weights.empty() ? 1.0 : weights[weights.size() == 1 ? 0 : i];
    if (!m.find_adapter(names[i]))
      fail("[lora] set_adapters: no adapter named '", names[i], "' (loaded: ", m.adapter_names(), ")");
    if (!std::isfinite(w)) fail("[lora] set_adapters: adapter '", names[i], "': weight ", w, " is not a finite number");
    if (!want.emplace(names[i], w).second) fail("[lora] set_adapters: adapter '", names[i], "' is named twice");
  }
  for (const auto& a : m.adapters) {
    if (!a.merged) continue;
    auto it = want.find(a.name);
    if (it == want.end() || it->second != a.scale)
      fail("[lora] set_adapters: adapter '", a.name,
           "' was merged into the weights at load (lora_mode merge): its scale ", a.scale,
           " is fixed (asked: ", it == want.end() ? std::string("inactive") : std::to_string(it->second),
           "); load it with lora_mode runtime or load_lora_weights to change it, or delete_adapters it");
  }
  for (auto& a : m.adapters) {
    auto it = want.find(a.name);
    a.active = it != want.end();
    if (a.active) a.scale = it->second;
    if (m.transformer && !a.merged) weights::set_adapter_scale(m.transformer->lora_slots(), a.name, a.scale, a.active);
  }
  if (m.transformer) m.transformer->lora_changed();
}

void ZImagePipeline::delete_adapters(const std::vector<std::string>& names) {
  auto lock = impl_->lock_for("delete_adapters()");
  impl_->remove_adapters(names, "delete_adapters");
}

void ZImagePipeline::unload_lora_weights() {
  auto lock = impl_->lock_for("unload_lora_weights()");
  std::vector<std::string> names;
  for (const auto& a : impl_->adapters) names.push_back(a.name);
  impl_->remove_adapters(names, "unload_lora_weights");
}

std::vector<LoraInfo> ZImagePipeline::loras() const {
  auto lock = impl_->lock_for("loras()");
  std::vector<LoraInfo> out;
  for (const auto& a : impl_->adapters) out.push_back({a.name, a.path, a.scale, a.active, a.merged});
  return out;
}

ZImagePipeline& ZImagePipeline::to(const std::string& device) {
  auto lock = impl_->lock_for("to()");
  if (device == "cpu") {
    impl_->opts.device = device;
    return *this;
  }
  if (device == "cuda" || device.rfind("cuda:", 0) == 0)
    fail("[pipeline] device '", device,
         "' is not available: the pipeline runs on the CPU (the CUDA backend, "
         "-DZIMAGE_CUDA=ON, runs the transformer's ops but is not wired into the pipeline yet)");
  fail("[pipeline] unknown device '", device, "' (expected cpu or cuda)");
}

void ZImagePipeline::set_attention_backend(const std::string& name) {
  auto lock = impl_->lock_for("set_attention_backend()");
  if (!known_attention_name(name)) fail("[transformer] unknown attention backend '", name, "'");
  if (!cpu_attention_name(name))
    fail("[transformer] attention backend '", name, "' needs a CUDA device; on the CPU use 'native'");
  impl_->attention = name;
}
std::string ZImagePipeline::attention_backend() const { return impl_->attention; }
void ZImagePipeline::set_vae_tiling(const VaeTilingOptions& o) {
  validate_vae_tiling(o);
  auto lock = impl_->lock_for("set_vae_tiling()");
  impl_->vae_tiling = o;
}
const VaeTilingOptions& ZImagePipeline::vae_tiling() const { return impl_->vae_tiling; }

void validate_vae_tiling(const VaeTilingOptions& o) {
  if (o.tiling != "auto" && o.tiling != "on" && o.tiling != "off")
    fail("[vae] tiling '", o.tiling, "' is not one of auto, on, off");
  if (o.mode != "seamless" && o.mode != "diffusers")
    fail("[vae] tile mode '", o.mode, "' is not one of seamless, diffusers");
  if (o.tile_size < 0 || o.tile_size > 4096)
    fail("[vae] tile size ", o.tile_size, " latents is out of range (0 = automatic, up to 4096)");
  if (o.mode == "seamless" && o.tile_size != 0 && o.tile_size < 8)
    fail("[vae] tile size ", o.tile_size, " latents is below the seamless minimum of 8");
  if (!(o.memory_budget_gb >= 0 && o.memory_budget_gb < 1e6))
    fail("[vae] memory budget ", o.memory_budget_gb, " GB is out of range");
}
void ZImagePipeline::interrupt() { impl_->interrupted = true; }
const std::string& ZImagePipeline::folder() const { return impl_->folder; }
void ZImagePipeline::load_controlnet(const std::string& folder_or_file) {
  auto lock = impl_->lock_for("load_controlnet()");
  impl_->attach_controlnet(folder_or_file);
}
void ZImagePipeline::remove_controlnet() {
  auto lock = impl_->lock_for("remove_controlnet()");
  impl_->controlnet.reset();
  impl_->controlnet_cfg.reset();
  impl_->controlnet_dir.clear();
}
bool ZImagePipeline::has_controlnet() const { return impl_->controlnet_cfg.has_value(); }
Shape ZImagePipeline::latents_shape(int64_t batch, int height, int width) const {
  const int64_t vae_scale = impl_->vae_scale_factor * 2;
  return {batch, impl_->in_channels, 2 * (height / vae_scale), 2 * (width / vae_scale)};
}

PipelineOutput ZImagePipeline::operator()(const CallParams& p, const ProgressFn& progress) {
  auto lock = impl_->lock_for("the pipeline");
  impl_->owner = std::this_thread::get_id();
  struct Release {
    std::atomic<std::thread::id>& owner;
    ~Release() { owner = std::thread::id(); }
  } release{impl_->owner};
  // OpenMP's thread count is per calling thread: apply the pipeline's on whichever thread calls.
  ops::set_num_threads(impl_->opts.num_threads);
  return impl_->call(*this, p, progress);
}

PipelineOutput ZImagePipeline::Impl::call(ZImagePipeline& self, const CallParams& p, const ProgressFn& progress) {
  validate_call_params(p);
  const auto t_call = Clock::now();
  PipelineOutput out;
  const int64_t vae_scale = vae_scale_factor * 2;
  int height = p.height.value_or(1024), width = p.width.value_or(1024);
  // Edits: VaeImageProcessor.preprocess takes the image's size rounded down to multiples of
  // vae_scale and resizes to it with PIL's Lanczos filter (the mask to the same size, before its
  // grayscale conversion, as diffusers gets it from load_image: RGB).
  std::optional<Image> init_rgb, mask_rgb, control_rgb;
  const bool control = p.control_image.has_value();
  if (control) {
    if (!controlnet_cfg)
      fail(
          "[pipeline] control_image is given but no ControlNet is attached (PretrainedOptions::controlnet, "
          "load_controlnet, CLI --controlnet)");
    const int64_t want = 2 * in_channels + 1;
    if (p.mask_image && controlnet_cfg->control_in_dim != want)
      fail("[pipeline] ControlNet inpainting needs a ControlNet with control_in_dim ", want,
           " (control + mask + masked image latents); the attached one (", controlnet_dir, ") has ",
           controlnet_cfg->control_in_dim);
    // prepare_image: VaeImageProcessor.preprocess(image, height, width) resizes to the requested size.
    control_rgb = resize_lanczos(to_rgb(*p.control_image), width, height);
    if (p.image) {
      init_rgb = resize_lanczos(to_rgb(*p.image), width, height);
      mask_rgb = resize_lanczos(to_rgb(*p.mask_image), width, height);
    }
  } else if (p.image) {
    width = int(p.image->width - p.image->width % vae_scale);
    height = int(p.image->height - p.image->height % vae_scale);
    if (width < vae_scale || height < vae_scale)
      fail("[pipeline] init image is ", p.image->width, "x", p.image->height, ": this model needs sides of at least ",
           vae_scale);
    if ((p.height && *p.height != height) || (p.width && *p.width != width))
      fail("[pipeline] the requested size ", p.width.value_or(width), "x", p.height.value_or(height),
           " (width x height) differs from the init image's ", width, "x", height,
           "; the output has the image's size: leave height and width unset");
    init_rgb = resize_lanczos(to_rgb(*p.image), width, height);
    if (p.mask_image) mask_rgb = resize_lanczos(to_rgb(*p.mask_image), width, height);
  }
  if (height % vae_scale != 0)
    fail("[pipeline] height must be divisible by ", vae_scale, " for this model (got ", height, ")");
  if (width % vae_scale != 0)
    fail("[pipeline] width must be divisible by ", vae_scale, " for this model (got ", width, ")");
  if (p.max_sequence_length > max_positions)
    fail("[pipeline] max_sequence_length ", p.max_sequence_length, " exceeds the text encoder's ", max_positions,
         " positions");
  interrupted = false;
  const bool do_cfg = p.guidance_scale > 0;

  // 1. Prompts -> caption features.
  auto t0 = Clock::now();
  std::vector<Tensor> prompt_embeds, negative_embeds;
  int64_t batch;
  if (p.prompt_embeds) {
    prompt_embeds = *p.prompt_embeds;
    if (p.negative_prompt_embeds) negative_embeds = *p.negative_prompt_embeds;
    batch = int64_t(prompt_embeds.size());
  } else {
    batch = int64_t(p.prompt.size());
    prompt_embeds = encode(p.prompt, p.max_sequence_length, out.warnings);
    if (do_cfg) {
      std::vector<std::string> neg(size_t(batch), "");
      if (p.negative_prompt.size() == 1)
        neg.assign(size_t(batch), p.negative_prompt[0]);
      else if (!p.negative_prompt.empty())
        neg = p.negative_prompt;
      negative_embeds = encode(neg, p.max_sequence_length, out.warnings);
    }
  }
  for (auto* list : {&prompt_embeds, &negative_embeds})
    for (auto& e : *list)
      if (e.ndim() != 2 || e.dim(1) != cap_dim || e.dim(0) < 1)
        fail("[pipeline] prompt embeddings must be [L, ", cap_dim, "] with L >= 1, got ", shape_str(e.shape()));
  if (opts.low_memory)
    text_encoder.reset();
  else if (!opts.text_encoder_file.empty())  // it stays loaded: its file's pages leave the process until the next call
    release_file_mappings(opts.text_encoder_file);
  out.times.text_encoder = since(t0);
  if (progress) progress({"text_encoder", 0, 0, out.times.text_encoder});

  // 2. Timesteps (img2img / inpaint: cut by strength as get_timesteps does).
  const int64_t images = batch * p.num_images_per_prompt;
  const int64_t lh = 2 * (height / vae_scale), lw = 2 * (width / vae_scale);
  const Shape shape{images, in_channels, lh, lw};
  FlowMatchEulerDiscreteScheduler scheduler(*scheduler_cfg);
  const int64_t image_seq_len = (lh / 2) * (lw / 2);
  const double mu = scheduler.mu_for_image_seq_len(image_seq_len);
  std::vector<float> sigmas =
      p.sigmas ? *p.sigmas : FlowMatchEulerDiscreteScheduler::default_zimage_sigmas(p.num_inference_steps);
  scheduler.set_timesteps_sigmas(sigmas, mu);
  const bool edit = p.image.has_value() && !control, inpaint = p.mask_image.has_value() && !control;
  const int first_step = edit ? edit_start_step(int(scheduler.timesteps().size()), edit_strength(p)) : 0;
  const std::vector<float> timesteps(scheduler.timesteps().begin() + first_step, scheduler.timesteps().end());
  const int num_steps = int(timesteps.size());
  if (num_steps < 1)  // validate_call_params refuses this already
    fail("[pipeline] strength ", edit_strength(p), " leaves no denoising step");

  // 3. Latents.
  // Edits compute in the prompt embeddings' dtype (prepare_latents(..., prompt_embeds[0].dtype)):
  // with bfloat16 every tensor op of the noising and the blend rounds to bfloat16.
  const ops::Precision prec = ops::Precision::of(compute, "pipeline");
  auto rnd = [&](float v) { return prec.store(v); };
  // scheduler.scale_noise(sample, sigma, noise) = sigma * noise + (1.0 - sigma) * sample.
  auto scale_noise = [&](const Tensor& sample, const Tensor& noise, float sigma) {
    Tensor out = Tensor::empty(DType::F32, noise.shape());
    const int64_t per = sample.numel();
    const float sg = rnd(sigma), om = rnd(1.0f - sg);
    for (int64_t i = 0; i < out.numel(); ++i) {
      const float a = rnd(sg * rnd(noise.f32()[i])), b = rnd(om * sample.f32()[i % per]);
      out.f32()[i] = rnd(a + b);
    }
    return out;
  };
  std::vector<random::TorchGenerator> gens;
  for (auto& g : p.generator) gens.emplace_back(g.seed);
  if (gens.empty()) gens.emplace_back(uint64_t(std::chrono::system_clock::now().time_since_epoch().count()));
  std::vector<random::TorchGenerator*> ptrs;
  for (auto& g : gens) ptrs.push_back(&g);
  auto encode_image = [&]() {  // retrieve_latents(vae.encode(image), generator[0]), scaled: [1, C, lh, lw]
    const auto te0 = Clock::now();
    AutoencoderKL& v = autoencoder();
    Tensor x = preprocess_image(*init_rgb);
    ops::store_(prec, x);  // image.to(dtype)
    LatentDistribution dist = v.encode(x);
    if (dist.mean.shape() != Shape({1, in_channels, lh, lw}))
      fail("[pipeline] the VAE encodes the ", width, "x", height, " image to ", shape_str(dist.mean.shape()),
           ", expected ", shape_str(Shape{1, in_channels, lh, lw}));
    Tensor lat = dist.sample([&](const Shape& s) { return random::randn_tensor(s, *ptrs[0]); });
    const ops::Precision vp = ops::Precision::of(v.compute_dtype(), "vae");
    const float shift = float(v.config().shift_factor), scale = float(v.config().scaling_factor);
    for (int64_t i = 0; i < lat.numel(); ++i) lat.f32()[i] = vp.store(vp.store(lat.f32()[i] - shift) * scale);
    out.times.vae += since(te0);
    return lat;
  };
  Tensor latents, noise0, image_latents, mask;
  if (p.latents) {
    if (p.latents->shape() != shape)
      fail("[pipeline] unexpected latents shape ", shape_str(p.latents->shape()), ", expected ", shape_str(shape));
    latents = p.latents->to(DType::F32).clone();
    if (edit) ops::store_(prec, latents);
    if (inpaint) {  // prepare_latents with latents given: noise first, then the image latents
      noise0 = random::randn_tensor(shape, ptrs);
      image_latents = encode_image();
    }
    for (auto& g : p.generator) out.seeds.push_back(g.seed);
    if (p.generator.empty() && inpaint) out.seeds.push_back(gens[0].initial_seed());  // it drew the noise
  } else if (edit) {  // image latents sampled first, then the noise (diffusers' draw order)
    image_latents = encode_image();
    noise0 = random::randn_tensor(shape, ptrs);
    latents = scale_noise(image_latents, noise0, scheduler.sigmas()[size_t(first_step)]);
    for (int64_t i = 0; i < images; ++i) out.seeds.push_back(gens[gens.size() == 1 ? 0 : size_t(i)].initial_seed());
  } else {
    latents = random::randn_tensor(shape, ptrs);
    for (int64_t i = 0; i < images; ++i) out.seeds.push_back(gens[gens.size() == 1 ? 0 : size_t(i)].initial_seed());
  }
  if (inpaint) {
    if (p.masked_image_latents) {
      const Shape& ms = p.masked_image_latents->shape();
      if (ms.size() != 4 || (ms[0] != 1 && ms[0] != images) || ms[1] != in_channels || ms[2] != lh || ms[3] != lw)
        fail("[pipeline] masked_image_latents has shape ", shape_str(ms), ", expected ",
             shape_str(Shape{1, in_channels, lh, lw}), " (or batch ", images, ")");
    }
    mask = interpolate_nearest(preprocess_mask(*mask_rgb), lh, lw);  // [1, 1, lh, lw] of 0 / 1
  }
  // ControlNet: the control context [control_in_dim, 1, lh, lw] (argmax encodes: no generator draw).
  Tensor control_context;
  if (control) {
    const auto te0 = Clock::now();
    AutoencoderKL& v = autoencoder();
    const bool vb = v.compute_dtype() == DType::BF16;
    const float shift = float(v.config().shift_factor), scale = float(v.config().scaling_factor);
    auto encode_mode = [&](Tensor x) {  // (vae.encode(x).mode() - shift) * scale, in the VAE's dtype
      LatentDistribution dist = v.encode(x);
      if (dist.mean.shape() != Shape({1, in_channels, lh, lw}))
        fail("[pipeline] the VAE encodes the ", width, "x", height, " image to ", shape_str(dist.mean.shape()),
             ", expected ", shape_str(Shape{1, in_channels, lh, lw}));
      Tensor lat = dist.mode().clone();
      for (int64_t i = 0; i < lat.numel(); ++i) {
        float d = lat.f32()[i] - shift;
        if (vb) d = round_bf16(d);
        d *= scale;
        lat.f32()[i] = vb ? round_bf16(d) : d;
      }
      return lat;
    };
    auto to_vae_dtype = [&](Tensor x) {  // image.to(vae.dtype)
      if (vb) ops::round_to_bf16_(x);
      return x;
    };
    const int64_t cin = controlnet_cfg->control_in_dim, plane = lh * lw;
    control_context = Tensor::zeros(DType::F32, {cin, 1, lh, lw});  // channels past the latents stay 0 (2.x models)
    Tensor lat = encode_mode(to_vae_dtype(preprocess_image(*control_rgb)));
    std::copy(lat.f32(), lat.f32() + in_channels * plane, control_context.f32());
    if (p.mask_image) {  // ControlNet inpainting: [control, 1 - mask (latent size), masked image latents]
      Tensor m = preprocess_mask(*mask_rgb);  // [1, 1, H, W] of 0 / 1
      Tensor img = to_vae_dtype(preprocess_image(*init_rgb));
      const int64_t hw = int64_t(height) * width;
      for (int64_t c = 0; c < 3; ++c)
        for (int64_t k = 0; k < hw; ++k)
          if (!(m.f32()[k] < 0.5f)) img.f32()[c * hw + k] = 0.0f;  // init_image * (mask_condition < 0.5)
      Tensor ml = interpolate_nearest(m, lh, lw);
      for (int64_t k = 0; k < plane; ++k) control_context.f32()[in_channels * plane + k] = 1.0f - ml.f32()[k];
      Tensor il = encode_mode(img);
      std::copy(il.f32(), il.f32() + in_channels * plane, control_context.f32() + (in_channels + 1) * plane);
    }
    out.times.vae += since(te0);
    if (opts.low_memory) vae.reset();
  }
  if (opts.low_memory && edit) vae.reset();  // encoded; reloaded for the decode
  if (p.num_images_per_prompt > 1) {
    auto repeat = [&](std::vector<Tensor>& v) {
      std::vector<Tensor> r;
      for (auto& e : v)
        for (int i = 0; i < p.num_images_per_prompt; ++i) r.push_back(e);
      v = std::move(r);
    };
    repeat(prompt_embeds);
    if (do_cfg) repeat(negative_embeds);
  }

  // 4. Denoising loop. --low-memory packs each quantized weight for its GEMM and frees the copy
  // (ops/quantized.h) and releases its file pages: the transformer is never resident as a whole.
  t0 = Clock::now();
  const ops::TransientPacking transient(opts.low_memory);
  ZImageTransformer2DModel& model = dit();
  ControlInput control_input;
  if (control) {
    control_input.net = &cnet();
    control_input.scale = float(p.controlnet_conditioning_scale.value_or(0.75));
  }
  const int64_t per_image = latents.numel() / images;
  for (int i = 0; i < num_steps && !interrupted; ++i) {
    const auto ts = Clock::now();
    const float t = timesteps[size_t(i)];
    const float t_norm = FlowMatchEulerDiscreteScheduler::transformer_timestep(t);
    float guidance = p.guidance_scale;
    if (do_cfg && p.cfg_truncation <= 1.0 && double(t_norm) > p.cfg_truncation) guidance = 0.f;
    const bool apply_cfg = do_cfg && guidance > 0;

    std::vector<Tensor> x;
    for (int64_t b = 0; b < images; ++b) {
      Tensor xi = latents.slice0(b, b + 1).reshape({in_channels, 1, lh, lw}).clone();  // [C, 1, H, W]
      ops::store_(prec, xi);                                                           // latents.to(transformer.dtype)
      x.push_back(xi);
    }
    std::vector<Tensor> caps = prompt_embeds;
    std::vector<float> tv(size_t(images), t_norm);
    if (apply_cfg) {
      for (int64_t b = 0; b < images; ++b) x.push_back(x[size_t(b)]);
      caps.insert(caps.end(), negative_embeds.begin(), negative_embeds.end());
      tv.resize(size_t(2 * images), t_norm);
    }
    if (control) control_input.context.assign(x.size(), control_context);
    std::vector<Tensor> pred = model.forward(x, tv, caps, 2, 1, control ? &control_input : nullptr);
    Tensor noise = Tensor::empty(DType::F32, latents.shape());
    for (int64_t b = 0; b < images; ++b) {
      const float* pos = pred[size_t(b)].f32();
      float* dst = noise.f32() + b * per_image;
      if (apply_cfg) {
        const float* neg = pred[size_t(images + b)].f32();
        for (int64_t k = 0; k < per_image; ++k) dst[k] = pos[k] + guidance * (pos[k] - neg[k]);
        if (p.cfg_normalization) {
          double pn = 0, nn = 0;
          for (int64_t k = 0; k < per_image; ++k) {
            pn += double(pos[k]) * pos[k];
            nn += double(dst[k]) * dst[k];
          }
          const float ori = float(std::sqrt(pn)), cur = float(std::sqrt(nn));
          const float max_norm = ori * 1.0f;  // float(cfg_normalization) for True
          if (cur > max_norm) {
            const float s = max_norm / cur;
            for (int64_t k = 0; k < per_image; ++k) dst[k] *= s;
          }
        }
      } else {
        std::copy(pos, pos + per_image, dst);
      }
      for (int64_t k = 0; k < per_image; ++k) dst[k] = -dst[k];
    }
    latents = scheduler.step(noise, latents, first_step + i);
    if (inpaint) {  // keep the known region: (1 - mask) * init_latents_proper + mask * latents
      // init_latents_proper: the image latents noised to the next step's sigma; the clean ones after the last step.
      const bool last = i + 1 == num_steps;
      const Tensor proper =
          last ? image_latents : scale_noise(image_latents, noise0, scheduler.sigmas()[size_t(first_step + i + 1)]);
      const int64_t plane = lh * lw, per = proper.numel();
      for (int64_t k = 0; k < latents.numel(); ++k)
        if (mask.f32()[k % plane] == 0.0f) latents.f32()[k] = proper.f32()[k % per];
    }
    if (p.callback_on_step_end) p.callback_on_step_end(self, i, t, latents);
    out.times.step_seconds.push_back(since(ts));
    if (progress) progress({"denoise", i + 1, num_steps, out.times.step_seconds.back()});
  }
  if (opts.low_memory) transformer.reset(), controlnet.reset();
  out.times.denoise = since(t0);

  // 5. Decode.
  out.latents = latents;
  if (p.output_type != OutputType::Latent) {
    t0 = Clock::now();
    AutoencoderKL& v = autoencoder();
    Tensor z = v.latents_to_vae_space(latents);
    Tensor decoded = v.decode(z, vae_decode_options(vae_tiling));
    if (p.output_type == OutputType::Image)
      out.images = postprocess(decoded);
    else
      out.array = postprocess_float(decoded);
    if (opts.low_memory) vae.reset();
    out.times.vae += since(t0);
    if (progress) progress({"vae", 0, 0, out.times.vae});
  }
  out.times.total = since(t_call);
  return out;
}

void save_latents(const std::string& path, const Tensor& latents) { save_safetensors(path, {{"latents", latents}}); }

}  // namespace zimage
