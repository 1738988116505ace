// The `zimage` command: generate images and inspect model folders.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <random>

#include "cli_generate.h"
#include "cli_pull.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"zimage.cpp: Z-Image text-to-image inference (diffusers-compatible)", "zimage"};
  app.require_subcommand(1);
  // One line per error, on stderr.
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return std::string("zimage: error: ") + e.what() + " (see --help)\n";
  });
  zimage::cli::GenerateArgs gen;
  auto* g = app.add_subcommand("generate", "generate images from a prompt");
  zimage::cli::add_generate_options(*g, gen);
  std::string info_model;
  auto* info = app.add_subcommand("info", "show a model folder's components, configs, dtypes and sizes");
  info->add_option("model", info_model, "model folder or hub id in the Hugging Face cache")->required();
  zimage::cli::PullArgs pull_args;
  auto* pull = app.add_subcommand("pull", "download a model from the Hugging Face hub into its cache");
  zimage::cli::add_pull_options(*pull, pull_args);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (g->parsed()) return zimage::cli::run_generate(gen);
    if (info->parsed()) return zimage::cli::run_info(info_model);
    if (pull->parsed()) return zimage::cli::run_pull(pull_args);
  } catch (const zimage::Error& e) {
    std::fprintf(stderr, "zimage: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "zimage: internal error: %s\n", e.what());
    return 3;
  }
  return 0;
}
