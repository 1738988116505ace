#include "cli_serve.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <thread>

#include "core/error.h"
#include "generation_params.h"
#include "server/jobs.h"
#include "server/loras.h"
#include "server/runner.h"
#include "server/server.h"
#include "weights/lora.h"
#include "zimage/pipeline.h"

namespace zimage::cli {
namespace fs = std::filesystem;

void add_serve_options(CLI::App& s, ServeArgs& a) {
  GenerateArgs& g = a.gen;
  s.add_option("--host", a.host, "address to listen on (default loopback; another address without an API key warns)")
      ->capture_default_str();
  s.add_option("--port", a.port, "TCP port (0 = any free port, printed at start)")->capture_default_str();
  s.add_option("--api-key", a.api_key,
               "require 'Authorization: Bearer KEY' on every route but /health and the page (or --api-key-file, or "
               "ZIMAGE_API_KEY)");
  s.add_option("--api-key-file", a.api_key_file, "read the API key from this file's first line")
      ->check(CLI::ExistingFile);
  s.add_option("--cors-origin", a.cors_origins, "allow browser calls from this origin (repeat; none by default)");
  s.add_option("--max-size", a.max_size, "largest width and height a request may ask for")->capture_default_str();
  s.add_option("--max-steps", a.max_steps, "most denoising steps a request may ask for")->capture_default_str();
  s.add_option("--max-images", a.max_images, "most images per request")->capture_default_str();
  s.add_option("--queue-size", a.queue_size, "jobs that may wait; more are refused with 429")->capture_default_str();
  s.add_option("--keep-results", a.keep_seconds, "seconds a finished job's result is kept")->capture_default_str();
  s.add_option("--keep-results-count", a.keep_count, "most finished jobs kept")->capture_default_str();
  s.add_option("--max-body", a.max_body_mb, "largest request body in MB (413 beyond)")->capture_default_str();
  s.add_option("--read-timeout", a.read_timeout,
               "seconds a client may take for each read of its request (slow clients are dropped)")
      ->capture_default_str();
  s.add_option("--header-timeout", a.header_timeout,
               "seconds a client may take to send a request's headers (slowloris)")
      ->capture_default_str();
  s.add_option("--http-threads", a.http_threads, "connections served at once")->capture_default_str();
  s.add_option("--grace", a.grace, "seconds SIGTERM waits for queued and running jobs before cancelling them")
      ->capture_default_str();
  s.add_flag("-q,--quiet", a.quiet, "no log line per request");
  s.add_option("--lora-dir", a.lora_dir,
               "directory of .safetensors LoRAs a prompt may name with <lora:NAME:SCALE> (NAME: the path below it, "
               "without .safetensors); loaded on first use")
      ->check(CLI::ExistingDirectory);
  // generate's options that make sense for a server: the model's and the per-request defaults.
  add_param_options(s, g, kServe);
  s.get_option("--negative-prompt")->expected(1);
  for (CLI::Option* o : s.get_options())
    if (o->get_items_expected_max() == 1) o->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  s.final_callback([&s, &a] {
    for (CLI::Option* o : s.get_options())
      if (o->count() > 0) a.given.insert(o->get_name());
  });
}

namespace {

// A key must be printable ASCII without spaces (it travels in an HTTP header).
void check_key(const std::string& key, const std::string& from) {
  if (key.empty()) fail("[serve] the API key from ", from, " is empty");
  if (key.size() > 4096) fail("[serve] the API key from ", from, " is longer than 4096 characters");
  for (unsigned char c : key)
    if (c <= 32 || c >= 127) fail("[serve] the API key from ", from, " holds a space, control or non-ASCII character");
}

std::string resolve_key(const ServeArgs& a) {
  if (!a.api_key.empty() || a.given.count("--api-key")) {
    check_key(a.api_key, "--api-key");
    return a.api_key;
  }
  if (!a.api_key_file.empty()) {
    std::ifstream f(a.api_key_file);
    if (!f) fail("[serve] cannot read --api-key-file '", a.api_key_file, "'");
    std::string line;
    std::getline(f, line);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    check_key(line, "--api-key-file '" + a.api_key_file + "'");
    return line;
  }
  if (const char* e = std::getenv("ZIMAGE_API_KEY"); e && *e) {
    check_key(e, "ZIMAGE_API_KEY");
    return e;
  }
  return "";
}

void check_range(const char* opt, double v, double lo, double hi) {
  if (!(v >= lo && v <= hi)) fail("[serve] ", opt, " ", v, " is out of range [", lo, ", ", hi, "]");
}

bool is_loopback(const std::string& host) {
  return host == "127.0.0.1" || host == "::1" || host == "localhost" || host.rfind("127.", 0) == 0;
}

std::string model_name(const std::string& given) {
  std::error_code ec;
  if (!fs::is_directory(given, ec)) return given;
  fs::path f = fs::weakly_canonical(given, ec);
  if (f.filename().empty()) f = f.parent_path();
  return f.filename().string();
}

}  // namespace

int run_serve(ServeArgs a) {
  GenerateArgs& g = a.gen;
  check_range("--port", a.port, 0, 65535);
  check_range("--max-size", a.max_size, 16, 8192);
  check_range("--max-steps", a.max_steps, 1, 1000);
  check_range("--max-images", a.max_images, 1, 64);
  check_range("--queue-size", a.queue_size, 0, 100000);
  check_range("--keep-results", a.keep_seconds, 0, 1e9);
  check_range("--keep-results-count", a.keep_count, 0, 100000);
  check_range("--max-body", a.max_body_mb, 0.001, 4096);
  check_range("--read-timeout", a.read_timeout, 1, 3600);
  check_range("--http-threads", a.http_threads, 4, 1024);
  check_range("--header-timeout", a.header_timeout, 0.5, 3600);
  check_range("--grace", a.grace, 0, 86400);
  // The defaults must be requests the limits allow.
  for (auto [opt, v] : {std::pair<const char*, int>{"--width", g.width}, {"--height", g.height}}) {
    if (v < 16 || v > a.max_size) fail("[serve] ", opt, " ", v, " is outside [16, --max-size ", a.max_size, "]");
    if (v % 16 != 0) fail("[serve] ", opt, " ", v, " is not a multiple of 16");
  }
  if (g.steps < 1 || g.steps > a.max_steps)
    fail("[serve] --steps ", g.steps, " is outside [1, --max-steps ", a.max_steps, "]");
  if (g.negative_prompt.size() > 1) fail("[serve] give one default --negative-prompt");
  check_model_or_files(g, "[serve] ", "-m/--model");  // without one: every component a single file
  server::ServerOptions so;
  so.api_key = resolve_key(a);
  so.host = a.host;
  so.port = a.port;
  so.cors_origins = a.cors_origins;
  so.max_body_bytes = size_t(a.max_body_mb * 1024 * 1024);
  so.read_timeout_s = a.read_timeout;
  so.header_timeout_s = a.header_timeout;
  so.http_threads = a.http_threads;
  so.log_requests = !a.quiet;
  so.defaults = {g.width,
                 g.height,
                 g.steps,
                 g.guidance,
                 g.negative_prompt.empty() ? "" : g.negative_prompt[0],
                 g.cfg_normalization,
                 g.cfg_truncation,
                 g.max_sequence_length};
  so.limits = {a.max_size, a.max_steps, a.max_images};
  // Without a model: the transformer file's name (as generate's PNG metadata).
  so.model_name = g.model.empty() ? fs::path(g.transformer_file).stem().string() : model_name(g.model);
  so.model_path = g.model.empty() ? g.transformer_file : g.model;
  PretrainedOptions po;  // dtypes, device, threads, low memory, local files, single files: the table's serve rows
  apply_pretrained_params(g, po, kServe);
  // LoRAs: run time (a request's <lora:NAME:SCALE> changes scales between calls).
  std::vector<server::LoraFile> lora_files;
  for (const auto& arg : g.lora) {
    weights::LoraSpec l = weights::parse_lora_arg(arg);
    std::error_code ec;
    if (!fs::is_regular_file(l.path, ec)) fail("[lora] ", l.path, " does not exist or is not a file");
    po.loras.push_back({l.path, l.scale, ""});
    lora_files.push_back({weights::lora_stem(l.path), l.path, l.scale, weights::file_sha256(l.path)});
  }
  po.lora_mode = "runtime";
  if (!lora_files.empty() || !a.lora_dir.empty())
    so.loras = std::make_shared<const server::LoraCatalog>(lora_files, a.lora_dir);
  validate_pretrained_options(po);
  VaeTilingOptions tiling{g.vae_tiling, g.vae_tile_mode, g.vae_tile_size, 0};
  validate_vae_tiling(tiling);
  // The defaults pass the same checks as a request.
  server::parse_job("{\"prompt\":\"\"}", so.defaults, so.limits);

  if (so.api_key.empty()) {
    if (is_loopback(a.host))
      std::fprintf(stderr,
                   "zimage serve: warning: no API key (--api-key, --api-key-file or ZIMAGE_API_KEY): every local user "
                   "and program can use this server\n");
    else
      std::fprintf(
          stderr,
          "zimage serve: WARNING: no API key and --host %s: anyone who can reach this address can use this server\n",
          a.host.c_str());
  }

  // SIGTERM/SIGINT go to one thread that stops the server; SIGPIPE (a client gone) is ignored.
  signal(SIGPIPE, SIG_IGN);
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  server::Server srv(so);
  const int port = srv.bind();
  std::fprintf(stderr, "zimage serve: listening on http://%s:%d (loading %s)\n", a.host.c_str(), port,
               so.model_path.c_str());
  std::fflush(stderr);
  std::atomic<bool> http_done{false};
  std::thread http([&] {
    srv.serve();
    http_done = true;
  });

  std::atomic<server::JobQueue*> queue{nullptr};
  std::atomic<bool> stop_requested{false};
  std::thread sig([&] {
    int s = 0;
    sigwait(&sigs, &s);
    stop_requested = true;
    if (s == SIGTERM || s == SIGINT)
      std::fprintf(stderr, "zimage serve: %s: stopping (grace %.0f s)\n", s == SIGTERM ? "SIGTERM" : "SIGINT", a.grace);
    srv.begin_shutdown();
    if (server::JobQueue* q = queue.load()) q->shutdown(std::chrono::milliseconds(int64_t(a.grace * 1000)));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let waiting requests send their answers
    while (!http_done) {  // (a stop before the listen loop started would be lost: repeat it)
      srv.stop();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  auto stop_all = [&] {
    if (!stop_requested) kill(getpid(), SIGTERM);
    http.join();
    sig.join();
  };

  std::optional<ZImagePipeline> pipe;
  std::unique_ptr<server::JobQueue> q;
  try {
    pipe.emplace(ZImagePipeline::from_pretrained(g.model, po));
    pipe->set_attention_backend(g.attention);
    pipe->set_vae_tiling(tiling);
    server::ModelInfo info{so.model_name, g.model,         g.dtype,         g.vae_dtype,
                           g.vae_tiling,  g.vae_tile_mode, g.vae_tile_size, record_model_files(g)};
    q = std::make_unique<server::JobQueue>(
        server::pipeline_runner(*pipe, info, so.loras),
        server::QueueOptions{size_t(a.queue_size), a.keep_seconds, size_t(a.keep_count)});
  } catch (...) {
    stop_all();
    throw;
  }
  queue = q.get();
  srv.set_queue(q.get());
  if (stop_requested) q->shutdown(std::chrono::milliseconds(0));
  std::fprintf(stderr, "zimage serve: ready: http://%s:%d/\n", a.host.c_str(), port);
  std::fflush(stderr);
  http.join();
  sig.join();
  q.reset();
  std::fprintf(stderr, "zimage serve: stopped\n");
  return 0;
}

}  // namespace zimage::cli
