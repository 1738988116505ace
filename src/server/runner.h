// Runs a queued request on the shared pipeline and encodes its PNGs with the metadata the CLI
// writes (A1111 "parameters" infotext and the "zimage" JSON chunk).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "server/jobs.h"
#include "zimage/pipeline.h"

namespace zimage::server {

struct ModelInfo {
  std::string name;  // infotext "Model:" (hub id or folder name)
  std::string path;  // as given to -m ("" without one: the model is `files`)
  std::string dtype = "bfloat16", vae_dtype = "float32";
  std::string vae_tiling = "auto", vae_tile_mode = "seamless";
  int vae_tile_size = 0;
  // The model's single files, under the keys generate records them ("transformer_file", ...).
  std::map<std::string, std::string> files;
};

// The runner of a JobQueue: one pipeline call per job; a cancelled job stops after the current
// step (or stage) without decoding. With `loras`: before each call the pipeline's run-time
// adapters are set to the --lora files at their scales, overridden by the request's
// <lora:NAME:SCALE> tags; a --lora-dir file a tag names is loaded on first use and kept (scale 0:
// not run).
JobRunner pipeline_runner(ZImagePipeline& pipe, ModelInfo info, std::shared_ptr<const LoraCatalog> loras = nullptr);

// The PNG metadata of image i of a request (as `zimage generate` writes it), with the LoRAs that
// ran (A1111 `<lora:name:scale>` after the prompt and "Lora hashes"; zimage JSON "loras").
PngMetadata image_metadata(const GenerateRequest& r, const ModelInfo& m, int image_index, uint64_t seed,
                           const std::vector<LoraFile>& loras = {});

}  // namespace zimage::server
