// `zimage generate` and `zimage info`.
#pragma once
#include <CLI/CLI.hpp>
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
  std::vector<uint64_t> seed;
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
  bool local_files_only = false;  // never download a hub id (HF_HUB_OFFLINE=1 does the same)
  std::string vae_tiling = "auto";
  std::string vae_tile_mode = "seamless";
  int vae_tile_size = 0;
  std::string save_latents;
  std::string from_png;  // take the generation parameters from this PNG's zimage metadata
  std::set<std::string> given;  // options given on the command line (override --from-png)
};

void add_generate_options(CLI::App& app, GenerateArgs& a);
int run_generate(GenerateArgs a);
// Fills `a` from a PNG written by zimage (its "zimage" JSON chunk); options in a.given win.
void apply_png_parameters(const std::string& png, GenerateArgs& a);
int run_info(const std::string& model);

}  // namespace zimage::cli
