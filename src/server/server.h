// The HTTP layer of `zimage serve` (cpp-httplib): OpenAI, AUTOMATIC1111 and job routes over one
// JobQueue, bearer-key auth, CORS allow-list, body and timeout limits, /health, /metrics, the
// embedded web page, one log line per request.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "server/jobs.h"
#include "server/request.h"

namespace zimage::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 7860;                        // 0: any free port (bind() returns it)
  std::string api_key;                    // "": no auth
  std::vector<std::string> cors_origins;  // exact origins allowed to call from a browser; none by default
  size_t max_body_bytes = 50u << 20;      // larger bodies: 413
  int read_timeout_s = 10;                // per read of headers/body (slow clients are dropped)
  double header_timeout_s = 20;           // a request's headers must be complete within this (slowloris)
  int write_timeout_s = 30;
  int http_threads = 32;  // connections served at once
  Defaults defaults;
  Limits limits;
  std::string model_name, model_path;
  std::shared_ptr<const LoraCatalog> loras;  // what a prompt's <lora:NAME:SCALE> may name (none: no tags)
  bool log_requests = true;                  // one line per request on stderr
};

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();
  // Binds the listening socket; returns the port. Throws zimage::Error naming host and port.
  int bind();
  // Serves until stop() (blocks). Routes that generate answer 503 until set_queue().
  void serve();
  // The model is loaded: generation routes use this queue, /health says ok.
  void set_queue(JobQueue* queue);
  // SIGTERM: /health says stopping, new jobs get 503.
  void begin_shutdown();
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The embedded web page (src/server/web/index.html, built into the binary by CMake).
extern const char kIndexHtml[];
extern const unsigned long kIndexHtmlSize;

}  // namespace zimage::server
