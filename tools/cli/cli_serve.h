// `zimage serve`: an HTTP image server (OpenAI, AUTOMATIC1111 and job routes, web page).
#pragma once
#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "cli_generate.h"

namespace zimage::cli {

struct ServeArgs {
  GenerateArgs gen;  // model, dtypes, threads, tiling, and the per-request defaults
  std::string host = "127.0.0.1";
  int port = 7860;
  std::string api_key, api_key_file;
  std::vector<std::string> cors_origins;
  int max_size = 2048, max_steps = 50, max_images = 4;
  int queue_size = 64;
  double keep_seconds = 600;
  int keep_count = 64;
  double max_body_mb = 50;
  int read_timeout = 10;
  double header_timeout = 20;
  int http_threads = 32;
  double grace = 30;
  bool quiet = false;
  std::string lora_dir;  // --lora-dir: LoRAs a prompt's <lora:NAME:SCALE> may name
  std::set<std::string> given;
};

void add_serve_options(CLI::App& app, ServeArgs& a);
// Runs until SIGTERM/SIGINT (then returns 0 after the grace period).
int run_serve(ServeArgs a);

}  // namespace zimage::cli
