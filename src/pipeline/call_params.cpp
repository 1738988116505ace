// Validation of ZImagePipeline call parameters, as diffusers raises them (plus the checks that
// keep bad input from turning into a crash or a huge allocation).
#include <algorithm>
#include <cmath>
#include <thread>

#include "core/error.h"
#include "ops/ops.h"
#include "pipeline/pipeline_internal.h"
#include "zimage/pipeline.h"

namespace zimage {

OutputType parse_output_type(const std::string& s) {
  if (s == "pil" || s == "image") return OutputType::Image;
  if (s == "np" || s == "array" || s == "pt") return OutputType::Array;
  if (s == "latent") return OutputType::Latent;
  fail("[pipeline] unknown output_type '", s, "' (expected pil, np or latent)");
}

namespace {

// The multiple of 16 nearest to a positive side (halves round up), within [16, kMaxSide].
int64_t nearest_multiple_of_16(int side) {
  const int64_t m = (int64_t(side) + 8) / 16 * 16;
  return std::clamp<int64_t>(m, 16, kMaxSide);
}

// The dtypes a component can compute in: no backend computes float16 (the CPU would silently
// compute in float32 while the PNG says float16), so it is refused.
void check_compute_dtype(const char* option, const std::string& s) {
  if (s == "bfloat16" || s == "bf16" || s == "float32" || s == "fp32" || s == "f32" || s == "float") return;
  if (s == "float16" || s == "fp16" || s == "f16" || s == "half")
    fail("[from_pretrained] ", option, " '", s,
         "' is not supported: no backend of this build computes in float16; "
         "use bfloat16 (same memory, float32 range) or float32");
  fail("[from_pretrained] ", option, " '", s, "' is not a dtype (use bfloat16 or float32)");
}

}  // namespace

int max_num_threads() { return 4 * std::max(1, int(std::thread::hardware_concurrency())); }

void validate_pretrained_options(const PretrainedOptions& o) {
  ops::cpu_kernel_level();  // a bad ZIMAGE_CPU fails here, before anything loads
  check_compute_dtype("torch_dtype", o.torch_dtype);
  check_compute_dtype("vae_dtype", o.vae_dtype);
  const int max_threads = max_num_threads();
  if (o.num_threads < 0 || o.num_threads > max_threads)
    fail("[from_pretrained] num_threads must be 0 (all cores) or 1..", max_threads, " (4 x the ", max_threads / 4,
         " hardware threads), got ", o.num_threads);
  for (const auto& l : o.loras) {
    if (l.path.empty()) fail("[lora] a LoRA has an empty file name");
    if (!std::isfinite(l.scale)) fail("[lora] ", l.path, ": scale ", l.scale, " is not a finite number");
  }
  if (o.lora_mode != "merge" && o.lora_mode != "runtime")
    fail("[lora] lora_mode '", o.lora_mode, "' is not one of merge, runtime");
}

double edit_strength(const CallParams& p) { return p.strength.value_or(p.mask_image ? 1.0 : 0.6); }

int edit_start_step(int num_inference_steps, double strength) {
  // get_timesteps: init_timestep = min(N * strength, N); t_start = int(max(N - init_timestep, 0)).
  const double n = double(num_inference_steps);
  const double init = std::min(n * strength, n);
  return int(std::max(n - init, 0.0));
}

void validate_call_params(const CallParams& p) {
  const bool have_embeds = p.prompt_embeds.has_value();
  if (p.prompt.empty() && !have_embeds) fail("[pipeline] no prompt given (pass a prompt or prompt_embeds)");
  if (!p.prompt.empty() && have_embeds) fail("[pipeline] pass either prompt or prompt_embeds, not both");
  const int64_t batch = have_embeds ? int64_t(p.prompt_embeds->size()) : int64_t(p.prompt.size());
  if (batch < 1) fail("[pipeline] prompt_embeds is empty");
  const bool control = p.control_image.has_value();
  if (!p.image || control) {  // with an init image the size is the image's (checked below)
    const int h = p.height.value_or(1024), w = p.width.value_or(1024);
    if (h <= 0) fail("[pipeline] height must be positive, got ", h);
    if (w <= 0) fail("[pipeline] width must be positive, got ", w);
    if (h % 16 != 0) fail("[pipeline] height must be divisible by 16 (got ", h, "); use ", nearest_multiple_of_16(h));
    if (w % 16 != 0) fail("[pipeline] width must be divisible by 16 (got ", w, "); use ", nearest_multiple_of_16(w));
    if (h > kMaxSide || w > kMaxSide)
      fail("[pipeline] ", w, "x", h, " is larger than the supported ", kMaxSide, "x", kMaxSide);
  }
  if (p.sigmas) {
    if (p.sigmas->empty()) fail("[pipeline] sigmas is empty");
    for (float s : *p.sigmas)
      if (!std::isfinite(s) || s < 0 || s > 1) fail("[pipeline] sigmas must be finite values in [0, 1], got ", s);
  } else {
    if (p.num_inference_steps < 1)
      fail("[pipeline] num_inference_steps must be at least 1, got ", p.num_inference_steps);
    if (p.num_inference_steps > kMaxSteps)
      fail("[pipeline] num_inference_steps ", p.num_inference_steps, " exceeds ", kMaxSteps);
  }
  if (!std::isfinite(p.guidance_scale))
    fail("[pipeline] guidance_scale must be a finite number, got ", p.guidance_scale);
  if (!std::isfinite(p.cfg_truncation))
    fail("[pipeline] cfg_truncation must be a finite number, got ", p.cfg_truncation);
  if (p.num_images_per_prompt < 1 || p.num_images_per_prompt > kMaxImages)
    fail("[pipeline] num_images_per_prompt must be in [1, ", kMaxImages, "], got ", p.num_images_per_prompt);
  if (p.max_sequence_length < 1 || p.max_sequence_length > kMaxSequence)
    fail("[pipeline] max_sequence_length must be in [1, ", kMaxSequence, "], got ", p.max_sequence_length);
  if (!p.negative_prompt.empty() && int64_t(p.negative_prompt.size()) != batch && p.negative_prompt.size() != 1)
    fail("[pipeline] ", p.negative_prompt.size(), " negative prompts for ", batch,
         " prompts (give one, or one per prompt)");
  if (p.guidance_scale > 0 && have_embeds && !p.negative_prompt_embeds)
    fail(
        "[pipeline] when prompt_embeds is given without prompt, negative_prompt_embeds must be given for guidance > 0");
  if (p.negative_prompt_embeds && int64_t(p.negative_prompt_embeds->size()) != batch)
    fail("[pipeline] ", p.negative_prompt_embeds->size(), " negative_prompt_embeds for ", batch, " prompts");
  const int64_t images = batch * p.num_images_per_prompt;
  if (p.generator.size() > 1 && int64_t(p.generator.size()) != images)
    fail("[pipeline] ", p.generator.size(), " generators (seeds) for ", images,
         " images: give one seed, or one per image (prompts x num_images_per_prompt)");
  if (p.mask_image && !p.image) fail("[pipeline] mask_image is given without an image to inpaint");
  if (p.masked_image_latents && !p.mask_image) fail("[pipeline] masked_image_latents is given without a mask_image");
  if (p.strength && !p.image)
    fail("[pipeline] strength is set but no image is given (it applies to img2img and inpainting)");
  auto check = [](const Image& im, const char* what, int min_side) {
    if (im.width <= 0 || im.height <= 0 || im.channels < 1 || im.channels > 4 ||
        im.pixels.size() != size_t(im.width) * size_t(im.height) * size_t(im.channels))
      fail("[pipeline] ", what, " is not a valid image (", im.width, "x", im.height, ", ", im.channels, " channels, ",
           im.pixels.size(), " bytes)");
    if (im.width > kMaxSide || im.height > kMaxSide)
      fail("[pipeline] ", what, " is ", im.width, "x", im.height, ", larger than the supported ", kMaxSide, "x",
           kMaxSide);
    if (im.width < min_side || im.height < min_side)
      fail("[pipeline] ", what, " is ", im.width, "x", im.height, ": its sides must be at least ", min_side, " pixels");
  };
  if (p.controlnet_conditioning_scale && !control)
    fail("[pipeline] controlnet_conditioning_scale is set but no control_image is given");
  if (control) {  // ZImageControlNetPipeline; with image + mask_image ZImageControlNetInpaintPipeline
    const double s = p.controlnet_conditioning_scale.value_or(0.75);
    if (!std::isfinite(s) || std::fabs(s) > 1000)
      fail("[pipeline] controlnet_conditioning_scale must be a finite number in [-1000, 1000], got ", s);
    check(*p.control_image, "control image", 1);  // resized to the output size, like the inpainting inputs
    if (p.image && !p.mask_image)
      fail(
          "[pipeline] control_image with an init image but no mask_image: ControlNet inpainting takes image, "
          "mask_image and control_image (diffusers has no ControlNet img2img pipeline for Z-Image)");
    if (p.strength) fail("[pipeline] strength is not a parameter of the ControlNet pipelines (they start from noise)");
    if (p.masked_image_latents)
      fail("[pipeline] masked_image_latents is not a parameter of the ControlNet inpainting pipeline");
    if (p.image) check(*p.image, "init image", 1);
    if (p.mask_image) check(*p.mask_image, "mask image", 1);
  }
  if (p.image && !control) {
    const double strength = edit_strength(p);
    if (!(strength >= 0 && strength <= 1))  // diffusers' message
      fail("[pipeline] The value of strength should be in [0.0, 1.0] but is ", strength);
    check(*p.image, "init image", 16);
    if (p.mask_image) {
      check(*p.mask_image, "mask image", 16);
      if (p.mask_image->width != p.image->width || p.mask_image->height != p.image->height)
        fail("[pipeline] mask image is ", p.mask_image->width, "x", p.mask_image->height, " but the init image is ",
             p.image->width, "x", p.image->height, "; they must be the same size");
    }
    // The output has the image's size, rounded down to multiples of 16 (VaeImageProcessor resizes it).
    const int iw = p.image->width / 16 * 16, ih = p.image->height / 16 * 16;
    if ((p.height && *p.height != ih) || (p.width && *p.width != iw))
      fail("[pipeline] the requested size ", p.width.value_or(iw), "x", p.height.value_or(ih),
           " (width x height) differs from the init image's ", p.image->width, "x", p.image->height,
           iw != p.image->width || ih != p.image->height
               ? " (resized to " + std::to_string(iw) + "x" + std::to_string(ih) + ")"
               : std::string(),
           "; the output has the image's size: leave height and width unset");
    const int n = p.sigmas ? int(p.sigmas->size()) : p.num_inference_steps;
    const int kept = n - edit_start_step(n, strength);
    if (kept < 1)
      fail("[pipeline] After adjusting the num_inference_steps by strength parameter: ", strength,
           ", the number of pipeline steps is ", kept, " which is < 1 and not appropriate for this pipeline.");
  }
  for (auto& g : p.generator)
    if (g.device != "cpu")
      fail("[pipeline] generator device '", g.device,
           "': only torch.Generator(\"cpu\") streams are reproduced (CUDA Philox is not implemented yet)");
}

}  // namespace zimage
