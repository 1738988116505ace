// Fuzzes the JSON config readers: the first input byte picks the reader, the rest is the file.
//   0 transformer/config.json     ZImageTransformerConfig::load
//   1 vae/config.json             AutoencoderKLConfig::load
//   2 text_encoder/config.json    Qwen3Config::load
//   3 scheduler_config.json       FlowMatchEulerConfig::load, then the schedule the pipeline builds
//   4 model_index.json            read_model_index (in a folder with every component folder)
// A config a reader accepts must give usable derived values (UBSan watches the arithmetic) and,
// for the scheduler, a finite schedule.
#include <cmath>
#include <filesystem>

#include "fuzz_util.h"
#include "pipeline/model_folder.h"
#include "scheduler/flow_match_euler.h"
#include "text_encoder/qwen3_config.h"
#include "transformer/config.h"
#include "vae/autoencoder_kl_config.h"

using namespace zimage;

namespace {

void transformer(const std::string& path) {
  auto c = ZImageTransformerConfig::load(path);
  ZIMAGE_FUZZ_CHECK(c.head_dim() > 0 && c.head_dim() * c.n_heads == c.dim);
  (void)c.adaln_dim();
  ZIMAGE_FUZZ_CHECK(c.ffn_hidden_dim() > 0);
  ZIMAGE_FUZZ_CHECK(c.has_patch(c.all_patch_size.at(0), c.all_f_patch_size.at(0)));
}

void vae(const std::string& path) {
  auto c = AutoencoderKLConfig::load(path);
  ZIMAGE_FUZZ_CHECK(c.spatial_scale() >= 1);
  (void)c.tile_latent_min_size();
}

void qwen3(const std::string& path) {
  auto c = Qwen3Config::load(path);
  (void)c;
}

void scheduler_config(const std::string& path) {
  using namespace zimage::scheduler;
  auto c = FlowMatchEulerConfig::load(path);
  FlowMatchEulerDiscreteScheduler s(c);
  for (int64_t steps : {1, 8}) {
    for (int64_t seq : {int64_t(16), int64_t(4096)}) {
      const double mu = s.mu_for_image_seq_len(seq);
      s.set_timesteps_sigmas(FlowMatchEulerDiscreteScheduler::default_zimage_sigmas(steps), mu);
      for (float v : s.sigmas()) ZIMAGE_FUZZ_CHECK(std::isfinite(v));
      for (float v : s.timesteps()) ZIMAGE_FUZZ_CHECK(std::isfinite(v));
    }
  }
}

struct ModelFolder {
  std::string dir;
  ModelFolder() : dir(fuzz::scratch() / "model") {
    for (const char* c : {"scheduler", "text_encoder", "tokenizer", "transformer", "vae"})
      std::filesystem::create_directories(dir + "/" + c);
  }
};

void model_index(std::string_view bytes) {
  static const ModelFolder m;
  fuzz::write_file(m.dir + "/model_index.json", bytes);
  auto mi = read_model_index(m.dir);
  ZIMAGE_FUZZ_CHECK(mi.components.size() >= 5);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int which = data[0] % 5;
  const std::string_view bytes = fuzz::as_view(data + 1, size - 1);
  static const std::string path = fuzz::scratch() / "config.json";
  ZIMAGE_FUZZ_EXPECT_ERRORS({
    if (which == 4) {
      model_index(bytes);
    } else {
      fuzz::write_file(path, bytes);
      if (which == 0) transformer(path);
      if (which == 1) vae(path);
      if (which == 2) qwen3(path);
      if (which == 3) scheduler_config(path);
    }
  });
  return 0;
}
