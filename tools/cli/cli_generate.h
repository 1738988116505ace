// `zimage generate` and `zimage info`.
#pragma once
#include <CLI/CLI.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace zimage::cli {

struct GenerateArgs {
  std::string model;
  std::vector<std::string> prompt;
  std::vector<std::string> negative_prompt;
  int width = 1024, height = 1024;
  int steps = 8;
  double guidance = 0.0;
  bool cfg_normalization = false;
  double cfg_truncation = 1.0;
  std::vector<std::string> seed;  // as given: integers in [0, 2^64-1], or -1 for a random seed
  int num_images = 1;
  int max_sequence_length = 512;
  std::string dtype = "bfloat16";
  std::string vae_dtype = "float32";
  std::string device = "cpu";
  std::string attention = "native";
  int threads = 0;
  std::string output = "zimage.png";
  bool overwrite = false;
  bool quiet = false;
  bool low_memory = false;
  std::string transformer_file;     // --transformer
  std::string text_encoder_file;    // --text-encoder
  std::string vae_file;             // --vae
  std::string tokenizer;            // --tokenizer DIR
  std::vector<std::string> lora;    // --lora FILE[:SCALE], repeatable
  std::string lora_mode = "merge";  // --lora-mode merge|runtime
  bool local_files_only = false;    // never download a hub id (HF_HUB_OFFLINE=1 does the same)
  std::string vae_tiling = "auto";
  std::string vae_tile_mode = "seamless";
  int vae_tile_size = 0;
  std::string save_latents;
  std::string from_png;  // take the generation parameters from this PNG's zimage metadata
  // img2img / inpainting: the init image, its mask, the strength (default 0.6, with a mask 1.0).
  std::string init_image, mask;
  std::optional<double> strength;
  // ControlNet: the control image, the ControlNet folder, the conditioning scale (default 0.75).
  std::string control_image, controlnet;
  std::optional<double> control_scale;
  bool size_from_png = false;   // --from-png set width and height
  std::set<std::string> given;  // options given on the command line (override --from-png)
  // Where the image's initial noise sits (from --from-png): slice noise_index of one
  // torch.randn([noise_batch_size, C, h, w]) draw from the seed (a batch generated from one seed).
  int noise_batch_size = 1, noise_index = 0;
};

// The text of `zimage --version`: version, compiler, build type, CUDA or not.
std::string version_text();
// The exit-code table printed in the --help footers (see README "Exit codes").
extern const char* const kExitCodes;

void add_generate_options(CLI::App& app, GenerateArgs& a);
int run_generate(GenerateArgs a);
// Fills `a` from a PNG's generation parameters: its "zimage" JSON chunk, or when it has none the
// A1111 "parameters" text; options in a.given win. Every value is type- and range-checked
// (zimage::Error "[from-png] <png>: '<key>' is <value>, expected ...").
void apply_png_parameters(const std::string& png, GenerateArgs& a);
// `zimage info [MODEL] [--transformer F --text-encoder F --vae F [--tokenizer DIR]] [--controlnet P]`.
int run_info(const GenerateArgs& a);

}  // namespace zimage::cli
