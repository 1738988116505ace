// zimage.cpp public API: ZImagePipeline, mirroring diffusers' names.
//
//   auto pipe = zimage::ZImagePipeline::from_pretrained("Tongyi-MAI/Z-Image-Turbo", {.torch_dtype = "bfloat16"});
//   zimage::CallParams p;
//   p.prompt = {"a cat"};
//   p.num_inference_steps = 8;
//   p.guidance_scale = 0;
//   p.generator = {42};
//   auto out = pipe(p);               // out.images[0] is an 8-bit RGB zimage::Image
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "zimage/image.h"
#include "zimage/tensor.h"

namespace zimage {

// Options of diffusers' DiffusionPipeline.from_pretrained.
struct PretrainedOptions {
  std::string torch_dtype = "bfloat16";  // compute dtype of text encoder and transformer: bfloat16 or float32
  std::string vae_dtype = "float32";     // the VAE decodes in fp32 by default (config force_upcast); or bfloat16
  // A hub id ("Tongyi-MAI/Z-Image-Turbo") is looked up in the Hugging Face cache and downloaded
  // there on first use (what `zimage pull` does, progress on stderr) unless local_files_only or
  // HF_HUB_OFFLINE=1.
  std::string revision = "main";  // branch, tag or commit of a hub id
  std::string subfolder;
  std::string cache_dir;          // Hugging Face hub cache root ("" = HF_HUB_CACHE, HF_HOME/hub, ...)
  bool local_files_only = false;  // never download; a missing file is an error naming it
  bool force_download = false;    // download the files again even when cached
  std::string token;              // hub token ("" = HF_TOKEN or the token file)
  bool use_safetensors = true;    // only safetensors weights are supported
  bool low_cpu_mem_usage = true;  // weights are memory-mapped, never copied when the dtype fits
  // Release each component when the pipeline is done with it (diffusers' model_cpu_offload_seq
  // "text_encoder->transformer->vae"): peak memory is one component, components reload per call.
  bool low_memory = false;
  // A .safetensors or .gguf file with the transformer's weights under diffusers' names, used
  // instead of <model>/transformer's weights (the config still comes from the model). GGUF
  // linear weights may be quantized (Q8_0, Q5_0, Q4_0, Q6_K, Q5_K, Q4_K, Q3_K, Q2_K): they stay
  // quantized in memory and are dequantized tile by tile in the GEMM.
  std::string transformer_file;
  // The same for the Qwen3 text encoder: transformers' names or llama.cpp's Qwen3 GGUF names
  // (token_embd, blk.N.attn_q, ...); quantized linear weights and token embeddings stay quantized.
  std::string text_encoder_file;
  // The VAE's weights from one .safetensors file: diffusers' names, or the original LDM / Flux
  // layout of ComfyUI's `vae/ae.safetensors` (encoder.down.N.block.M, mid.attn_1, ...), converted
  // as diffusers' from_single_file does.
  std::string vae_file;
  // A tokenizer/ folder (tokenizer.json + tokenizer_config.json) used instead of the model's.
  std::string tokenizer;
  // Without a model (from_pretrained("", opts)): transformer_file, text_encoder_file and vae_file
  // are all needed, and their configs are inferred from the files (tensor shapes, a GGUF's
  // metadata; what the files cannot tell is Z-Image-Turbo's: README "Which file do I download").
  // The tokenizer comes from a GGUF text encoder's metadata, else from `tokenizer`.
  // A ZImageControlNetModel folder (diffusers' save_pretrained: config.json +
  // diffusion_pytorch_model.safetensors) or one .safetensors file (alibaba-pai's Union files: the
  // config inferred from its tensors for the transformer, README "ControlNet") to attach; "" =
  // none (load_controlnet attaches one later).
  std::string controlnet;
  // LoRA adapters for the transformer (.safetensors: diffusers/PEFT, kohya `lora_unet_`, or
  // `diffusion_model.` keys), each with its scale (diffusers' set_adapters weight) and adapter
  // name ("" = the file's stem). Keys that match no module are an error. How they are applied:
  //   lora_mode "merge" (default): merged into the dense weights at load (W += scale * B @ A in
  //     float32, then the compute dtype): no cost per step, the scale is fixed (set_adapters can
  //     not change it; delete_adapters / unload_lora_weights reload the transformer without it).
  //     On a quantized (GGUF) weight, where merging would requantize, it runs at run time.
  //   lora_mode "runtime": every LoRA runs as PEFT runs it, a branch next to the unchanged weight
  //     (y = W x + scale * B(A x), in the compute dtype): a little work per linear layer and step,
  //     the scales can be changed with set_adapters.
  // LoRAs loaded later with load_lora_weights always run at run time.
  struct Lora {
    std::string path;
    double scale = 1.0;
    std::string name;
  };
  std::vector<Lora> loras;
  std::string lora_mode = "merge";  // merge or runtime
  std::string device = "cpu";
  int num_threads = 0;  // 0 = all cores; at most max_num_threads()
};
// Largest accepted num_threads: 4 x the hardware threads.
int max_num_threads();
// Checks the options that need no model (from_pretrained calls it first): torch_dtype and
// vae_dtype are bfloat16 or float32 (float16 is refused: no backend computes in it),
// num_threads is 0..max_num_threads(). An error names the option and the value.
void validate_pretrained_options(const PretrainedOptions& o);

enum class OutputType { Image, Array, Latent };  // "pil", "np", "latent"
OutputType parse_output_type(const std::string& s);

// torch.Generator("cpu").manual_seed(seed). A CUDA (Philox) generator is reserved for later.
struct Generator {
  uint64_t seed = 0;
  std::string device = "cpu";
};

// VAE tiled decoding (diffusers' vae.enable_tiling()). "seamless" tiles decode each tile with a
// margin for the convolutions and normalise with the whole image's group norm statistics: within
// 40 dB of the untiled decode, about twice its compute, working memory of one tile plus the
// latent-resolution mid block. "diffusers" tiles are AutoencoderKL.tiled_decode exactly (each
// tile normalised on its own, seams blended; visibly different from the untiled decode).
struct VaeTilingOptions {
  std::string tiling = "auto";    // auto: tile when the untiled decode would not fit the budget; on; off
  std::string mode = "seamless";  // seamless or diffusers
  int tile_size = 0;              // latent pixels per tile side (8 image pixels each); 0 = automatic
  double memory_budget_gb = 0;    // auto's budget; 0 = half the physical memory
};
// Checks the values (an error names the option and the value).
void validate_vae_tiling(const VaeTilingOptions& o);

class ZImagePipeline;
// callback_on_step_end(pipe, step_index, timestep, latents): may modify latents in place and may
// call pipe.interrupt() to stop after this step.
using StepEndCallback = std::function<void(ZImagePipeline&, int, float, Tensor&)>;

// Parameters of ZImagePipeline.__call__ (diffusers' defaults).
struct CallParams {
  std::vector<std::string> prompt;   // one prompt or a list
  std::optional<int> height, width;  // default 1024; multiples of 16
  int num_inference_steps = 50;
  std::optional<std::vector<float>> sigmas;  // custom sigmas (then num_inference_steps = size)
  float guidance_scale = 5.0f;
  bool cfg_normalization = false;
  double cfg_truncation = 1.0;
  std::vector<std::string> negative_prompt;  // empty = "" per prompt (when CFG is on)
  int num_images_per_prompt = 1;
  std::vector<Generator> generator;                  // empty: random seed; 1: one generator; N: per image
  std::optional<Tensor> latents;                     // [B, 16, H/8, W/8] float32
  std::optional<std::vector<Tensor>> prompt_embeds;  // per prompt [L_i, cap_dim]
  std::optional<std::vector<Tensor>> negative_prompt_embeds;
  OutputType output_type = OutputType::Image;
  StepEndCallback callback_on_step_end;
  int max_sequence_length = 512;

  // img2img and inpainting (diffusers' ZImageImg2ImgPipeline and ZImageInpaintPipeline) on the same
  // loaded model: `image` alone is img2img, `image` with `mask_image` is inpainting. Images of any
  // channel count are converted as PIL's convert("RGB") (the mask: convert("L"), then >= 128 is
  // repainted, below is kept). Sides must be multiples of 16; height and width default to the
  // image's (giving others is an error). The image is VAE-encoded and sampled, then noised at the
  // first timestep `strength` keeps; only the kept steps run (num_inference_steps * strength).
  std::optional<Image> image;
  std::optional<Image> mask_image;  // same size as image; white = repaint
  // Accepted as diffusers accepts it ([1 or B, 16, h, w]); diffusers' Z-Image inpainting does not
  // use it (it encodes the image instead), so it does not change the result.
  std::optional<Tensor> masked_image_latents;
  std::optional<double> strength;  // in [0, 1]; default 0.6 for img2img, 1.0 for inpainting

  // ControlNet (diffusers' ZImageControlNetPipeline) on a pipeline with a ControlNet attached
  // (PretrainedOptions::controlnet or load_controlnet): the control image is converted as
  // convert("RGB"), resized to height x width (default 1024, as diffusers) with PIL's Lanczos
  // filter, VAE-encoded (the distribution's mode, no generator draw) and given to the ControlNet,
  // whose hints are scaled by controlnet_conditioning_scale (default 0.75). With `image` and
  // `mask_image` too it is ZImageControlNetInpaintPipeline: the masked image's latents and the mask
  // join the control context (a ControlNet with control_in_dim 33); generation still starts from
  // noise (no strength).
  std::optional<Image> control_image;
  std::optional<double> controlnet_conditioning_scale;
};

// A loaded LoRA adapter (ZImagePipeline::loras()).
struct LoraInfo {
  std::string name, path;
  double scale = 1.0;
  bool active = true;   // set_adapters named it (an inactive adapter stays loaded but does not run)
  bool merged = false;  // merged into the weights at load (lora_mode "merge"): its scale is fixed
};

struct StageTimes {
  double text_encoder = 0, denoise = 0, vae = 0, total = 0;
  std::vector<double> step_seconds;
};

struct PipelineOutput {
  std::vector<Image> images;    // OutputType::Image
  Tensor array;                 // OutputType::Array: [B, H, W, 3] float in [0, 1]
  Tensor latents;               // final latents [B, 16, h, w] (always filled)
  std::vector<uint64_t> seeds;  // the seed used for each image's generator ("one generator": repeated)
  StageTimes times;
  std::vector<std::string> warnings;  // e.g. truncated prompts
};

// Progress reports for front ends (CLI progress bar).
struct Progress {
  std::string stage;  // "text_encoder", "denoise", "vae"
  int step = 0, num_steps = 0;
  double seconds = 0;  // time of the last step
};
using ProgressFn = std::function<void(const Progress&)>;

// Checks of the call parameters that need no model (the rest is checked after loading).
void validate_call_params(const CallParams& p);
// Writes latents (e.g. output_type latent) as a safetensors file with one tensor "latents".
void save_latents(const std::string& path, const Tensor& latents);
// `zimage info`: components, configs, dtypes, parameter counts and bytes on disk, as JSON text.
std::string describe_model(const std::string& path_or_id, const PretrainedOptions& opts = {});

// Thread safety: one pipeline may be shared by several threads (a server does). Calls and the
// set_*/to() methods are serialised: a second call waits for the first to finish, then runs with
// the pipeline's own thread count (num_threads) on its own thread, and gives the same result it
// gives alone. interrupt() may be called from any thread. A callback that calls back into the
// pipeline it runs in gets an Error (it would otherwise deadlock). Separate pipelines run in parallel.
class ZImagePipeline {
 public:
  // path_or_id: a diffusers folder or hub id; "" loads from single files (opts.transformer_file,
  // text_encoder_file and vae_file, configs inferred from them).
  static ZImagePipeline from_pretrained(const std::string& path_or_id, const PretrainedOptions& opts = {});
  ZImagePipeline(ZImagePipeline&&) noexcept;
  ZImagePipeline& operator=(ZImagePipeline&&) noexcept;
  ~ZImagePipeline();

  // "cpu" (or "cuda" in a build with the CUDA backend).
  ZImagePipeline& to(const std::string& device);

  // diffusers' transformer.set_attention_backend(name): "native" (and its aliases), "flash",
  // "_flash_3", ... An unknown name, or one this build cannot run, is an error naming it.
  void set_attention_backend(const std::string& name);
  std::string attention_backend() const;

  // How the VAE decodes large images (default: auto, seamless).
  void set_vae_tiling(const VaeTilingOptions& options);
  const VaeTilingOptions& vae_tiling() const;

  // LoRA adapters after loading, as diffusers' ZImageLoraLoaderMixin (see PretrainedOptions::loras):
  // load_lora_weights(path, adapter_name) adds one that runs at run time with `scale` (name "" =
  // the file's stem; a name already loaded is an error). set_adapters(names, weights) makes
  // exactly `names` active with those weights (weights empty: 1.0 each; one value: for all); the
  // others stay loaded but do not run. delete_adapters(names) removes adapters; unload_lora_weights
  // removes all, after which the pipeline gives the base model's images bit for bit. Unknown names
  // are errors listing the loaded ones; a merged adapter's scale can not change (an error).
  void load_lora_weights(const std::string& path, const std::string& adapter_name = "", double scale = 1.0);
  void set_adapters(const std::vector<std::string>& names, const std::vector<double>& weights = {});
  void delete_adapters(const std::vector<std::string>& names);
  void unload_lora_weights();
  std::vector<LoraInfo> loras() const;

  PipelineOutput operator()(const CallParams& params, const ProgressFn& progress = {});
  void interrupt();  // from a callback or another thread: the running call stops after its current step

  const std::string& folder() const;

  // Attaches a ZImageControlNetModel from its diffusers folder or a single file (as
  // PretrainedOptions::controlnet); it shares the loaded transformer's
  // modules (nothing of the base model is loaded again). A ControlNet whose config does not match
  // the transformer is an Error before any weight is read. Replaces an attached one.
  void load_controlnet(const std::string& folder_or_file);
  void remove_controlnet();
  bool has_controlnet() const;
  // The shape of the initial latents of `batch` images of height x width pixels
  // ([batch, in_channels, 2 * (height / (2 * vae_scale)), 2 * (width / (2 * vae_scale))]), e.g.
  // to pass CallParams.latents drawn elsewhere.
  Shape latents_shape(int64_t batch, int height, int width) const;

 private:
  ZImagePipeline();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace zimage
