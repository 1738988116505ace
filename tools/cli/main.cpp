// The `zimage` command: generate images and inspect model folders.
//
// Exit codes (README "Exit codes", docs/DESIGN.md "Errors"):
//   0  success (also --help and --version)
//   1  bad input or usage: option parse errors, prompts, parameters, model files, PNGs, outputs
//      that cannot be written; one line "zimage: error: ..." on stderr, no output file written
//   2  out of memory
//   3  internal error (a bug): "zimage: internal error: ..."
#include <CLI/CLI.hpp>
#include <cstdio>
#include <new>

#include "cli_generate.h"
#include "cli_pull.h"
#include "cli_serve.h"
#include "core/error.h"
#include "generation_params.h"

namespace {
constexpr int kExitOk = 0, kExitBadInput = 1, kExitOutOfMemory = 2, kExitInternal = 3;
}

int main(int argc, char** argv) {
  CLI::App app{"zimage.cpp: Z-Image text-to-image inference (diffusers-compatible)", "zimage"};
  app.require_subcommand(1);
  app.set_version_flag("--version", zimage::cli::version_text(), "print the version and build information and exit");
  app.footer(zimage::cli::kExitCodes);
  // One line per error, on stderr.
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return std::string("zimage: error: ") + e.what() + " (see --help)\n";
  });
  zimage::cli::GenerateArgs gen;
  auto* g = app.add_subcommand("generate", "generate images from a prompt");
  zimage::cli::add_generate_options(*g, gen);
  g->footer(zimage::cli::kExitCodes);
  zimage::cli::GenerateArgs info_args;
  auto* info = app.add_subcommand("info", "show a model's components, configs, dtypes and sizes");
  info->add_option("model", info_args.model,
                   "model folder or hub id in the Hugging Face cache (or none: --transformer, --text-encoder and --vae "
                   "give every component, their configs inferred from the files)");
  zimage::cli::add_param_options(*info, info_args, zimage::cli::kInfo);
  info->footer(zimage::cli::kExitCodes);
  zimage::cli::PullArgs pull_args;
  auto* pull = app.add_subcommand("pull", "download a model from the Hugging Face hub into its cache");
  zimage::cli::add_pull_options(*pull, pull_args);
  pull->footer(zimage::cli::kExitCodes);
  zimage::cli::ServeArgs serve_args;
  auto* serve =
      app.add_subcommand("serve", "serve images over HTTP (OpenAI, AUTOMATIC1111 and job routes, a web page)");
  zimage::cli::add_serve_options(*serve, serve_args);
  serve->footer(zimage::cli::kExitCodes);
  // Hidden: prints docs/PARAMETERS.md, the table of generation parameters (tools/cli/generation_params.cpp).
  auto* params = app.add_subcommand("params", "print the generation parameter table (Markdown)")->group("");
  bool params_as_json = false;
  params->add_flag("--json", params_as_json, "as JSON");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version print and succeed; every other parse error is bad usage.
    return app.exit(e) == 0 ? kExitOk : kExitBadInput;
  }
  try {
    if (g->parsed()) return zimage::cli::run_generate(gen);
    if (params->parsed()) {
      std::fputs(
          params_as_json ? (zimage::cli::params_json().dump(1) + "\n").c_str() : zimage::cli::params_markdown().c_str(),
          stdout);
      return kExitOk;
    }
    if (info->parsed()) return zimage::cli::run_info(info_args);
    if (pull->parsed()) return zimage::cli::run_pull(pull_args);
    if (serve->parsed()) return zimage::cli::run_serve(serve_args);
  } catch (const zimage::Error& e) {
    std::fprintf(stderr, "zimage: error: %s\n", e.what());
    return kExitBadInput;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "zimage: error: out of memory\n");
    return kExitOutOfMemory;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "zimage: internal error: %s\n", e.what());
    return kExitInternal;
  }
  return kExitOk;
}
