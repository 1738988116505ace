// Every component config of a Z-Image model folder, parsed and validated by the components' own
// parsers, plus the relations between components. `generate` (from_pretrained) and `info`
// (describe_model) both read a folder through this, so they accept and refuse the same folders.
#pragma once
#include "pipeline/model_folder.h"
#include "scheduler/flow_match_euler_config.h"
#include "text_encoder/qwen3_config.h"
#include "transformer/config.h"
#include "vae/autoencoder_kl_config.h"

namespace zimage {

struct ModelConfigs {
  Qwen3Config text_encoder;
  ZImageTransformerConfig transformer;
  AutoencoderKLConfig vae;
  scheduler::FlowMatchEulerConfig scheduler;
};

ModelConfigs read_model_configs(const ModelIndex& mi);
// The relations between the components (text encoder width = transformer cap_feat_dim, transformer
// in_channels = VAE latent channels); errors start with `tag`.
void check_model_configs(const ModelConfigs& c, const char* tag);

}  // namespace zimage
