#include "cli_pull.h"

#include <cstdio>

#include "core/error.h"
#include "hub/hub.h"

namespace zimage::cli {

void add_pull_options(CLI::App& p, PullArgs& a) {
  p.footer(
      "Without FILE: what ZImagePipeline needs (model_index.json, configs, tokenizer files and the\n"
      "safetensors weights; no other precisions' variants, .bin duplicates, images or docs).\n"
      "With FILE...: exactly those files (e.g. a single-file checkpoint or GGUF).\n"
      "Writes the huggingface_hub cache (HF_HUB_CACHE, HF_HOME); HF_ENDPOINT, HF_TOKEN, HTTPS_PROXY\n"
      "and NO_PROXY apply. Prints the snapshot folder on stdout.");
  p.add_option("repo", a.repo, "hub repository id, e.g. Tongyi-MAI/Z-Image-Turbo")->required();
  p.add_option("file", a.files, "download only these repository files");
  p.add_option("--revision", a.revision, "branch, tag or commit")->capture_default_str();
  p.add_option("--include", a.include, "also download files matching this glob (repeatable)");
  p.add_option("--exclude", a.exclude, "skip files matching this glob (repeatable)");
  p.add_option("--cache-dir", a.cache_dir,
               "hub cache folder (default: HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub)");
  p.add_flag("--force-download", a.force, "download again even what the cache has");
  p.add_option("-j,--jobs", a.jobs, "files downloaded in parallel")->capture_default_str()->check(CLI::Range(1, 64));
  p.add_flag("-q,--quiet", a.quiet, "no progress output");
}

int run_pull(const PullArgs& a) {
  hub::PullOptions o;
  o.revision = a.revision;
  o.cache_dir = a.cache_dir;
  o.include = a.include;
  o.exclude = a.exclude;
  o.files = a.files;
  o.force_download = a.force;
  o.jobs = a.jobs;
  if (a.quiet) o.progress = hub::PullOptions::Progress::None;
  hub::PullResult r = hub::pull(a.repo, o);
  if (!a.quiet) {
    double mb = double(r.downloaded_bytes) / 1e6;
    std::fprintf(stderr, "zimage: %s at %s: %zu files, %zu downloaded (%.1f MB)\n", a.repo.c_str(), r.commit.c_str(),
                 r.files.size(), r.downloaded_files, mb);
  }
  std::printf("%s\n", r.snapshot.c_str());
  return 0;
}

}  // namespace zimage::cli
