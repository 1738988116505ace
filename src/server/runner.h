// Runs a queued request on the shared pipeline and encodes its PNGs with the metadata the CLI
// writes (A1111 "parameters" infotext and the "zimage" JSON chunk).
#pragma once
#include <string>

#include "server/jobs.h"
#include "zimage/pipeline.h"

namespace zimage::server {

struct ModelInfo {
  std::string name;  // infotext "Model:" (hub id or folder name)
  std::string path;  // as given to -m
  std::string dtype = "bfloat16", vae_dtype = "float32";
  std::string vae_tiling = "auto", vae_tile_mode = "seamless";
  int vae_tile_size = 0;
};

// The runner of a JobQueue: one pipeline call per job; a cancelled job stops after the current
// step (or stage) without decoding.
JobRunner pipeline_runner(ZImagePipeline& pipe, ModelInfo info);

// The PNG metadata of image i of a request (as `zimage generate` writes it).
PngMetadata image_metadata(const GenerateRequest& r, const ModelInfo& m, int image_index, uint64_t seed);

}  // namespace zimage::server
