#include "server/runner.h"

#include <algorithm>
#include <charconv>
#include <map>

#include "weights/lora.h"

#ifndef ZIMAGE_VERSION
#define ZIMAGE_VERSION "unknown"
#endif

namespace zimage::server {

namespace {
std::string shortest(double v) {
  char buf[32];
  return std::string(buf, std::to_chars(buf, buf + sizeof buf, v).ptr);
}
}  // namespace

PngMetadata image_metadata(const GenerateRequest& r, const ModelInfo& m, int i, uint64_t seed,
                           const std::vector<LoraFile>& loras) {
  // Where this image's initial noise sits: one generator draws the whole batch at once.
  int noise_batch = 1, noise_index = 0;
  if (r.seeds.size() == 1) {
    noise_batch = r.num_images;
    noise_index = i;
  }
  PngMetadata meta;
  InfotextParams ip;
  ip.prompt = r.prompt;
  ip.negative_prompt = r.guidance > 0 ? r.negative_prompt : "";
  ip.steps = r.steps;
  ip.sampler = "Euler";
  ip.cfg_scale = r.guidance;
  ip.seed = seed;
  ip.width = r.width;
  ip.height = r.height;
  ip.model = m.name;
  ip.extra = {{"Schedule type", "Flow match"}, {"Version", std::string("zimage.cpp ") + ZIMAGE_VERSION}};
  if (r.image) {
    char buf[32];
    const auto end = std::to_chars(buf, buf + sizeof buf, r.denoising_strength).ptr;
    ip.extra.insert(ip.extra.begin(), {"Denoising strength", std::string(buf, end)});
  }
  if (!loras.empty()) {  // as `zimage generate --lora` records them
    std::string hashes;
    for (const auto& l : loras) {
      ip.prompt += " <lora:" + l.name + ":" + shortest(l.scale) + ">";
      hashes += (hashes.empty() ? "" : ", ") + l.name + ": " + l.sha256.substr(0, 12);
    }
    ip.extra.insert(ip.extra.begin(), {"Lora hashes", hashes});
  }
  meta.parameters = ip;
  meta.zimage = {{"prompt", r.prompt},
                 {"negative_prompt", r.negative_prompt},
                 {"height", r.height},
                 {"width", r.width},
                 {"num_inference_steps", r.steps},
                 {"guidance_scale", r.guidance},
                 {"cfg_normalization", r.cfg_normalization},
                 {"cfg_truncation", r.cfg_truncation},
                 {"seed", seed},
                 {"noise_batch_size", noise_batch},
                 {"noise_index", noise_index},
                 {"image_index", i},
                 {"num_images_per_prompt", r.num_images},
                 {"max_sequence_length", r.max_sequence_length},
                 {"dtype", m.dtype},
                 {"vae_dtype", m.vae_dtype},
                 {"vae_tiling", m.vae_tiling},
                 {"vae_tile_mode", m.vae_tile_mode},
                 {"vae_tile_size", m.vae_tile_size},
                 {"model", m.path},
                 {"generator", "torch.Generator(\"cpu\")"},
                 {"version", std::string("zimage.cpp ") + ZIMAGE_VERSION}};
  for (const auto& [key, file] : m.files) meta.zimage[key] = file;
  if (!loras.empty()) {
    nlohmann::json js = nlohmann::json::array();
    for (const auto& l : loras)
      js.push_back({{"name", l.name}, {"path", l.path}, {"sha256", l.sha256}, {"scale", l.scale}});
    meta.zimage["loras"] = js;
  }
  if (r.image) {  // an uploaded init image (and mask): recorded by size, the bytes are the client's
    meta.zimage["strength"] = r.denoising_strength;
    meta.zimage["init_image"] = {{"file", "upload"}, {"width", r.image->width}, {"height", r.image->height}};
    if (r.mask_image)
      meta.zimage["mask_image"] = {
          {"file", "upload"}, {"width", r.mask_image->width}, {"height", r.mask_image->height}};
  }
  return meta;
}

// The adapters of one request: the --lora files at their scales, then the tags' (a --lora-dir file
// is loaded into the pipeline the first time a tag names it). Returns what runs (scale != 0).
std::vector<LoraFile> select_loras(ZImagePipeline& pipe, const LoraCatalog& cat, const GenerateRequest& r,
                                   std::map<std::string, std::string>& hashes) {
  std::vector<LoraFile> want = cat.files();
  for (const LoraTag& t : r.loras) {
    auto it = std::find_if(want.begin(), want.end(), [&](const LoraFile& f) { return f.name == t.name; });
    if (it != want.end()) {
      it->scale = t.scale;
      continue;
    }
    LoraFile f{t.name, cat.resolve(t.name), t.scale, ""};
    bool loaded = false;
    for (const auto& l : pipe.loras()) loaded |= l.name == t.name;
    if (!loaded) {
      pipe.load_lora_weights(f.path, f.name, f.scale);
      hashes[f.name] = weights::file_sha256(f.path);
    }
    f.sha256 = hashes[f.name];
    want.push_back(f);
  }
  std::erase_if(want, [](const LoraFile& f) { return f.scale == 0; });
  std::vector<std::string> names;
  std::vector<double> scales;
  for (const auto& f : want) names.push_back(f.name), scales.push_back(f.scale);
  pipe.set_adapters(names, scales);
  return want;
}

JobRunner pipeline_runner(ZImagePipeline& pipe, ModelInfo info, std::shared_ptr<const LoraCatalog> loras) {
  auto hashes = std::make_shared<std::map<std::string, std::string>>();  // --lora-dir files loaded so far
  return [&pipe, info, loras, hashes](const GenerateRequest& r, const ProgressSink& progress,
                                      const std::function<bool()>& cancelled) {
    std::vector<LoraFile> ran;
    if (loras) ran = select_loras(pipe, *loras, r, *hashes);
    CallParams cp = to_call_params(r);
    // A cancelled job stops after the current step and skips the VAE decode (diffusers' interrupt()
    // would still decode): the exception leaves the pipeline through its RAII guards.
    cp.callback_on_step_end = [&](ZImagePipeline&, int, float, Tensor&) {
      if (cancelled()) throw JobCancelled{};
    };
    PipelineOutput out = pipe(cp, [&](const Progress& p) {
      progress(p);
      if (cancelled()) throw JobCancelled{};
    });
    if (cancelled()) throw JobCancelled{};
    JobResult res;
    res.seconds = out.times.total;
    for (size_t i = 0; i < out.images.size(); ++i) {
      PngMetadata meta = image_metadata(r, info, int(i), out.seeds[i], ran);
      JobImage img;
      img.seed = out.seeds[i];
      img.infotext = format_infotext(*meta.parameters);
      img.png = encode_png(out.images[i], meta);
      res.images.push_back(std::move(img));
    }
    return res;
  };
}

}  // namespace zimage::server
