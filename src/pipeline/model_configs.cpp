#include "pipeline/model_configs.h"

#include "core/error.h"

namespace zimage {

ModelConfigs read_model_configs(const ModelIndex& mi) {
  ModelConfigs c;
  c.text_encoder = Qwen3Config::load(mi.component_dir("text_encoder") + "/config.json");
  c.transformer = ZImageTransformerConfig::load(mi.component_dir("transformer") + "/config.json");
  c.vae = AutoencoderKLConfig::load(mi.component_dir("vae") + "/config.json");
  c.scheduler = scheduler::FlowMatchEulerConfig::load(mi.component_dir("scheduler") + "/scheduler_config.json");
  check_model_configs(c, "[from_pretrained] ");
  return c;
}

void check_model_configs(const ModelConfigs& c, const char* tag) {
  // The caption features the text encoder produces are what the transformer embeds, and the
  // transformer denoises the latents the VAE decodes.
  if (c.text_encoder.hidden_size != c.transformer.cap_feat_dim)
    fail(tag, "text_encoder hidden_size ", c.text_encoder.hidden_size, " != transformer cap_feat_dim ",
         c.transformer.cap_feat_dim);
  if (c.transformer.in_channels != c.vae.latent_channels)
    fail(tag, "transformer in_channels ", c.transformer.in_channels, " != vae latent_channels ", c.vae.latent_channels);
}

}  // namespace zimage
