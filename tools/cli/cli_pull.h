// `zimage pull`: download a model (or single files) into the Hugging Face cache.
#pragma once
#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace zimage::cli {

struct PullArgs {
  std::string repo;
  std::vector<std::string> files;  // single files (e.g. a GGUF) instead of the pipeline selection
  std::string revision = "main";
  std::vector<std::string> include, exclude;
  std::string cache_dir;
  bool force = false;
  int jobs = 4;
  bool quiet = false;
};

void add_pull_options(CLI::App& app, PullArgs& a);
int run_pull(const PullArgs& a);

}  // namespace zimage::cli
