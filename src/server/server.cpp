#include "server/server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <httplib.h>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <mutex>

#include "core/error.h"
#include "core/file_io.h"
#include "server/header_watch.h"

namespace zimage::server {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

const char* error_type(int status) {
  switch (status) {
    case 400:
    case 413:
    case 404:
    case 405:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 429:
      return "rate_limit_error";
    case 501:
      return "not_implemented_error";
    case 503:
      return "server_unavailable_error";
    default:
      return "server_error";
  }
}

bool is_sdapi(const std::string& path) { return path.rfind("/sdapi/", 0) == 0; }

// The error body of a route's API: OpenAI's {"error": {message, type, param, code}} or A1111's
// {"error", "detail", "field"}.
void send_error(const httplib::Request& req, httplib::Response& res, int status, const std::string& message,
                const std::string& field = "") {
  res.status = status;
  json body;
  if (is_sdapi(req.path))
    body = {{"error", error_type(status)}, {"detail", message}, {"field", field.empty() ? json(nullptr) : json(field)}};
  else
    body = {{"error",
             {{"message", message},
              {"type", error_type(status)},
              {"param", field.empty() ? json(nullptr) : json(field)},
              {"code", status == 401 ? json("invalid_api_key") : json(nullptr)}}}};
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

// Constant-time comparison (the key must not leak through timing).
bool same_secret(const std::string& a, const std::string& b) {
  unsigned char d = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) d |= static_cast<unsigned char>(a[i] ^ b[i % (b.empty() ? 1 : b.size())]);
  return d == 0;
}

// The route a path belongs to, for metrics (ids folded).
std::string route_of(const httplib::Request& req) {
  const std::string& p = req.path;
  static const char* fixed[] = {"/",
                                "/health",
                                "/metrics",
                                "/v1/images/generations",
                                "/v1/images/edits",
                                "/v1/jobs",
                                "/v1/models",
                                "/sdapi/v1/txt2img",
                                "/sdapi/v1/img2img",
                                "/sdapi/v1/progress",
                                "/sdapi/v1/interrupt",
                                "/sdapi/v1/sd-models",
                                "/sdapi/v1/options"};
  for (const char* f : fixed)
    if (p == f) return f;
  if (p.rfind("/v1/jobs/", 0) == 0)
    return p.size() > 7 && p.find("/events") != std::string::npos ? "/v1/jobs/{id}/events" : "/v1/jobs/{id}";
  if (p.rfind("/v1/files/", 0) == 0) return "/v1/files/{file}";
  return "other";
}

// The socket of the request's connection (found by its peer address and port and the local port), to notice a client
// that went away while its synchronous request waits. -1 when not found.
int connection_fd(const httplib::Request& req) {
  DIR* d = opendir("/proc/self/fd");
  if (!d) return -1;
  int found = -1;
  while (dirent* e = readdir(d)) {
    int fd = atoi(e->d_name);
    if (fd <= 2) continue;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    sockaddr_storage peer{}, local{};
    socklen_t pl = sizeof peer, ll = sizeof local;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&local), &ll) != 0)
      continue;
    auto port_of = [](const sockaddr_storage& s) {
      if (s.ss_family == AF_INET) return int(ntohs(reinterpret_cast<const sockaddr_in&>(s).sin_port));
      if (s.ss_family == AF_INET6) return int(ntohs(reinterpret_cast<const sockaddr_in6&>(s).sin6_port));
      return -1;
    };
    auto addr_of = [](const sockaddr_storage& s) {
      char buf[INET6_ADDRSTRLEN] = "";
      if (s.ss_family == AF_INET)
        inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(s).sin_addr, buf, sizeof buf);
      if (s.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(s).sin6_addr, buf, sizeof buf);
      return std::string(buf);
    };
    if (port_of(peer) == req.remote_port && port_of(local) == req.local_port && addr_of(peer) == req.remote_addr) {
      found = fd;
      break;
    }
  }
  closedir(d);
  return found;
}

// The peer closed its end (or the connection broke).
bool peer_gone(int fd) {
  if (fd < 0) return false;
  pollfd p{fd, POLLIN | POLLRDHUP, 0};
  if (poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return true;
  if (p.revents & POLLIN) {  // readable: data (pipelined) or EOF
    char c;
    return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
  }
  return false;
}

long rss_bytes() {
  std::ifstream f("/proc/self/statm");
  long pages = 0, rss = 0;
  f >> pages >> rss;
  return rss * sysconf(_SC_PAGESIZE);
}
long peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss * 1024L;
}

thread_local Clock::time_point t_request_start;

}  // namespace

struct Server::Impl {
  ServerOptions opt;
  httplib::Server http;
  std::atomic<JobQueue*> queue{nullptr};
  std::atomic<bool> stopping{false};
  std::mutex metrics_mu;
  std::map<std::pair<std::string, int>, uint64_t> requests;
  std::mutex options_mu;
  json sd_options = json::object();
  // Headers are bounded in time and in bytes (a body may already be in flight: max body + 1 MiB).
  HeaderWatch watch;

  explicit Impl(ServerOptions o)
      : opt(std::move(o)), watch(opt.header_timeout_s, uint64_t(opt.max_body_bytes) + (1u << 20), opt.log_requests) {}

  std::string url_base(const httplib::Request& req) const {
    std::string host = req.get_header_value("Host");
    if (host.empty() || host.size() > 255 || host.find_first_of(" \r\n\"'<>") != std::string::npos)
      host = opt.host + ":" + std::to_string(req.local_port);
    return "http://" + host;
  }

  // The queue, or a 503 when the model is still loading or the server is stopping.
  JobQueue* ready_queue(const httplib::Request& req, httplib::Response& res) {
    JobQueue* q = queue.load();
    if (!q)
      send_error(req, res, 503, "[serve] the model is still loading; retry shortly");
    else if (stopping)
      send_error(req, res, 503, "[serve] the server is shutting down and takes no new jobs"), q = nullptr;
    if (!q) res.set_header("Retry-After", "5");
    return q;
  }

  // Queues a job; on a refusal writes the error (429 with Retry-After) and returns null.
  std::shared_ptr<Job> submit(JobQueue& q, GenerateRequest r, const httplib::Request& req, httplib::Response& res) {
    try {
      for (const LoraTag& t : r.loras) {  // only LoRAs the server was started with
        if (!opt.loras)
          throw RequestError(
              400, "prompt",
              "[serve] 'prompt': <lora:" + t.name + ">: this server has no LoRAs (start it with --lora or --lora-dir)");
        opt.loras->resolve(t.name);
      }
      return q.submit(std::move(r));
    } catch (const RequestError& e) {
      send_error(req, res, e.status(), e.what(), e.field());
      if (e.status() == 429 || e.status() == 503)
        res.set_header("Retry-After", std::to_string(q.retry_after_seconds()));
      return nullptr;
    }
  }

  // Waits for a synchronous request's job; cancels it when the client goes away. nullopt: the
  // client is gone or the job did not succeed (the error is written).
  std::optional<JobView> wait_sync(JobQueue& q, const std::shared_ptr<Job>& job, const httplib::Request& req,
                                   httplib::Response& res) {
    const int fd = connection_fd(req);
    for (;;) {
      JobView v = q.wait(job, std::chrono::milliseconds(200));
      if (v.state == JobState::Done) return v;
      if (v.state == JobState::Failed) {
        send_error(req, res, 500, v.error.empty() ? "[serve] generation failed" : v.error);
        return std::nullopt;
      }
      if (v.state == JobState::Cancelled) {
        send_error(req, res, stopping ? 503 : 409,
                   stopping ? "[serve] the job was cancelled: the server is shutting down"
                            : "[serve] the job was cancelled (interrupt or DELETE /v1/jobs/" + v.id + ")");
        return std::nullopt;
      }
      if (peer_gone(fd)) {
        q.cancel(job->id);
        if (opt.log_requests)
          std::fprintf(stderr, "zimage serve: client %s:%d went away; job %s cancelled\n", req.remote_addr.c_str(),
                       req.remote_port, job->id.c_str());
        res.status = 499;
        return std::nullopt;
      }
    }
  }

  // A synchronous route's job: queued (a copy of `r`; the route still reads its fields), then
  // waited for. nullopt: refused, failed, cancelled or the client went away (the answer is written).
  std::optional<JobView> run_sync(const GenerateRequest& r, const httplib::Request& req, httplib::Response& res) {
    JobQueue* q = ready_queue(req, res);
    if (!q) return std::nullopt;
    auto job = submit(*q, r, req, res);
    if (!job) return std::nullopt;
    return wait_sync(*q, job, req, res);
  }

  json job_json(const httplib::Request& req, const Job& job, const JobView& v) {
    json images = json::array();
    if (v.result)
      for (size_t i = 0; i < v.result->images.size(); ++i)
        images.push_back({{"url", url_base(req) + "/v1/files/" + v.id + "-" + std::to_string(i) + ".png"},
                          {"path", "/v1/files/" + v.id + "-" + std::to_string(i) + ".png"},
                          {"seed", v.result->images[i].seed},
                          {"parameters", v.result->images[i].infotext}});
    return {{"id", v.id},
            {"object", "job"},
            {"status", state_name(v.state)},
            {"progress",
             {{"stage", v.stage},
              {"step", v.step},
              {"num_steps", v.num_steps},
              {"fraction", v.state == JobState::Done ? 1.0
                           : v.num_steps             ? double(v.step) / v.num_steps
                                                     : 0.0}}},
            {"queue_position", v.queue_position},
            {"eta_seconds", v.eta_seconds},
            {"params", request_json(job.request)},
            {"error", v.error.empty() ? json(nullptr) : json(v.error)},
            {"images", images}};
  }

  void routes();
  std::string metrics_text();
};

std::string Server::Impl::metrics_text() {
  std::string out;
  auto line = [&](const std::string& s) { out += s + "\n"; };
  line("# HELP zimage_requests_total HTTP requests by route and status.");
  line("# TYPE zimage_requests_total counter");
  {
    std::lock_guard lk(metrics_mu);
    for (auto& [k, n] : requests)
      line("zimage_requests_total{route=\"" + k.first + "\",status=\"" + std::to_string(k.second) + "\"} " +
           std::to_string(n));
  }
  JobQueue* q = queue.load();
  QueueStats s = q ? q->stats() : QueueStats{};
  line("# HELP zimage_queue_depth Jobs waiting in the queue.");
  line("# TYPE zimage_queue_depth gauge");
  line("zimage_queue_depth " + std::to_string(s.queued));
  line("# HELP zimage_jobs_running Jobs running (0 or 1).");
  line("# TYPE zimage_jobs_running gauge");
  line(std::string("zimage_jobs_running ") + (s.running ? "1" : "0"));
  line("# HELP zimage_jobs_total Finished jobs by outcome.");
  line("# TYPE zimage_jobs_total counter");
  line("zimage_jobs_total{state=\"succeeded\"} " + std::to_string(s.done));
  line("zimage_jobs_total{state=\"failed\"} " + std::to_string(s.failed));
  line("zimage_jobs_total{state=\"cancelled\"} " + std::to_string(s.cancelled));
  line("# HELP zimage_step_seconds Time of one denoising step.");
  line("# TYPE zimage_step_seconds histogram");
  for (size_t b = 0; b < kStepBuckets.size(); ++b)
    line("zimage_step_seconds_bucket{le=\"" + json(kStepBuckets[b]).dump() + "\"} " +
         std::to_string(s.step_buckets.empty() ? 0 : s.step_buckets[b]));
  line("zimage_step_seconds_bucket{le=\"+Inf\"} " + std::to_string(s.step_count));
  line("zimage_step_seconds_sum " + json(s.step_seconds_sum).dump());
  line("zimage_step_seconds_count " + std::to_string(s.step_count));
  line("# HELP zimage_resident_memory_bytes Resident memory now.");
  line("# TYPE zimage_resident_memory_bytes gauge");
  line("zimage_resident_memory_bytes " + std::to_string(rss_bytes()));
  line("# HELP zimage_peak_resident_memory_bytes Peak resident memory since start.");
  line("# TYPE zimage_peak_resident_memory_bytes gauge");
  line("zimage_peak_resident_memory_bytes " + std::to_string(peak_rss_bytes()));
  line("# HELP zimage_header_drops_total Connections dropped for slow or oversized request headers.");
  line("# TYPE zimage_header_drops_total counter");
  line("zimage_header_drops_total " + std::to_string(watch.dropped()));
  line("# HELP zimage_ready 1 once the model is loaded.");
  line("# TYPE zimage_ready gauge");
  line(std::string("zimage_ready ") + (q && !stopping ? "1" : "0"));
  return out;
}

void Server::Impl::routes() {
  using httplib::Request;
  using httplib::Response;
  auto& S = http;

  S.set_pre_routing_handler([this](const Request& req, Response& res) {
    t_request_start = Clock::now();
    watch.headers_done(req.remote_addr, req.remote_port);
    const std::string origin = req.get_header_value("Origin");
    bool cors = false;
    if (!origin.empty())
      for (const auto& o : opt.cors_origins)
        if (o == origin || o == "*") cors = true;
    if (cors) {
      res.set_header("Access-Control-Allow-Origin", origin);
      res.set_header("Vary", "Origin");
    }
    if (req.method == "OPTIONS") {  // CORS preflight: no auth (browsers send none)
      if (cors) {
        res.set_header("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
        res.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type");
        res.set_header("Access-Control-Max-Age", "600");
      }
      res.status = 204;
      return httplib::Server::HandlerResponse::Handled;
    }
    // The page itself is static and holds nothing; its API calls carry the key typed into it.
    if (opt.api_key.empty() || req.path == "/health" || (req.path == "/" && req.method == "GET"))
      return httplib::Server::HandlerResponse::Unhandled;
    const std::string auth = req.get_header_value("Authorization");
    const std::string prefix = "Bearer ";
    if (auth.rfind(prefix, 0) != 0 || !same_secret(auth.substr(prefix.size()), opt.api_key)) {
      send_error(req, res, 401,
                 auth.empty() ? "[serve] missing API key: send 'Authorization: Bearer <key>'"
                              : "[serve] the API key is not valid");
      res.set_header("WWW-Authenticate", "Bearer");
      res.set_header("Connection", "close");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });

  S.set_error_handler([this](const Request& req, Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 413)
      send_error(req, res, 413,
                 "[serve] the request body is larger than the limit of " + std::to_string(opt.max_body_bytes) +
                     " bytes (--max-body)");
    else if (res.status == 404)
      send_error(req, res, 404, "[serve] no route " + req.method + " " + req.path.substr(0, 200));
    else if (res.status >= 400)
      send_error(req, res, res.status, "[serve] bad request (HTTP " + std::to_string(res.status) + ")");
  });

  S.set_exception_handler([](const Request& req, Response& res, std::exception_ptr ep) {
    try {
      std::rethrow_exception(ep);
    } catch (const RequestError& e) {
      send_error(req, res, e.status(), e.what(), e.field());
    } catch (const Error& e) {
      send_error(req, res, 400, e.what());
    } catch (const std::bad_alloc&) {
      send_error(req, res, 500, "[serve] out of memory");
    } catch (const std::exception& e) {
      send_error(req, res, 500, std::string("[serve] internal error: ") + e.what());
    } catch (...) {
      send_error(req, res, 500, "[serve] internal error");
    }
  });

  S.set_logger([this](const Request& req, const Response& res) {
    watch.request_done(req.remote_addr, req.remote_port);
    {
      std::lock_guard lk(metrics_mu);
      ++requests[{route_of(req), res.status}];
    }
    if (!opt.log_requests) return;
    // Requests refused while their headers were read (timeouts, malformed) never reached routing.
    const bool routed = t_request_start != Clock::time_point{};
    double ms = routed ? std::chrono::duration<double, std::milli>(Clock::now() - t_request_start).count() : 0.0;
    t_request_start = Clock::time_point{};
    std::string path = req.path.substr(0, 200);
    for (char& c : path)
      if (static_cast<unsigned char>(c) < 32 || c == 127) c = '?';
    char took[48] = "(not routed)";
    if (routed) std::snprintf(took, sizeof took, "%.1f ms", ms);
    std::string method = req.method.substr(0, 16);
    for (char& c : method)
      if (static_cast<unsigned char>(c) < 32 || static_cast<unsigned char>(c) > 126) c = '?';
    std::fprintf(stderr, "zimage serve: %s \"%s %s\" %d %zu bytes %s\n",
                 req.remote_addr.empty() ? "-" : req.remote_addr.c_str(), method.c_str(), path.c_str(), res.status,
                 res.body.size(), took);
  });

  S.Get("/", [](const Request&, Response& res) {
    res.set_content(std::string(kIndexHtml, kIndexHtmlSize), "text/html; charset=utf-8");
    res.set_header("Content-Security-Policy",
                   "default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; script-src "
                   "'self' 'unsafe-inline'");
  });

  S.Get("/health", [this](const Request&, Response& res) {
    const bool ready = queue.load() != nullptr;
    const char* status = stopping ? "stopping" : ready ? "ok" : "loading";
    res.status = ready && !stopping ? 200 : 503;
    res.set_content(json{{"status", status}, {"model", opt.model_name}}.dump(), "application/json");
  });

  S.Get("/metrics",
        [this](const Request&, Response& res) { res.set_content(metrics_text(), "text/plain; version=0.0.4"); });

  S.Get("/v1/models", [this](const Request&, Response& res) {
    json m = {{"id", opt.model_name}, {"object", "model"}, {"created", 0}, {"owned_by", "zimage.cpp"}};
    res.set_content(json{{"object", "list"}, {"data", json::array({m})}}.dump(), "application/json");
  });

  // OpenAI image generation and edits: synchronous, through the queue.
  auto openai_images = [this](GenerateRequest r, const Request& req, Response& res) {
    auto v = run_sync(r, req, res);
    if (!v) return;
    json data = json::array();
    for (size_t i = 0; i < v->result->images.size(); ++i) {
      const JobImage& img = v->result->images[i];
      json d = {{"revised_prompt", r.prompt}, {"seed", img.seed}};
      if (r.response_format == "url")
        d["url"] = url_base(req) + "/v1/files/" + v->id + "-" + std::to_string(i) + ".png";
      else
        d["b64_json"] = base64_encode(img.png.data(), img.png.size());
      data.push_back(d);
    }
    res.set_content(json{{"created", long(std::time(nullptr))}, {"data", data}}.dump(-1, ' ', false,
                                                                                     json::error_handler_t::replace),
                    "application/json");
  };
  S.Post("/v1/images/generations", [this, openai_images](const Request& req, Response& res) {
    openai_images(parse_openai_generation(req.body, opt.defaults, opt.limits), req, res);
  });

  // OpenAI image edits: img2img, or inpainting with a mask (transparent = edit).
  S.Post("/v1/images/edits", [this, openai_images](const Request& req, Response& res) {
    if (!req.is_multipart_form_data())
      throw RequestError(400, "",
                         "[serve] /v1/images/edits takes multipart/form-data (fields image, mask, prompt, ...)");
    std::vector<FormField> fields;
    for (const auto& [name, f] : req.files) fields.push_back({f.name, f.filename, f.content_type, f.content});
    GenerateRequest r = parse_openai_edit(fields, opt.defaults, opt.limits);
    openai_images(std::move(r), req, res);
  });

  // Jobs.
  S.Post("/v1/jobs", [this](const Request& req, Response& res) {
    GenerateRequest r = parse_job(req.body, opt.defaults, opt.limits);
    JobQueue* q = ready_queue(req, res);
    if (!q) return;
    auto job = submit(*q, std::move(r), req, res);
    if (!job) return;
    res.status = 202;
    res.set_header("Location", "/v1/jobs/" + job->id);
    res.set_content(job_json(req, *job, q->view(job)).dump(-1, ' ', false, json::error_handler_t::replace),
                    "application/json");
  });
  S.Get(R"(/v1/jobs/([0-9a-f]{1,64}))", [this](const Request& req, Response& res) {
    JobQueue* q = queue.load();
    auto job = q ? q->find(req.matches[1]) : nullptr;
    if (!job)
      return send_error(req, res, 404,
                        "[serve] no job '" + std::string(req.matches[1]) + "' (unknown, or its result was dropped)");
    res.set_content(job_json(req, *job, q->view(job)).dump(-1, ' ', false, json::error_handler_t::replace),
                    "application/json");
  });
  S.Delete(R"(/v1/jobs/([0-9a-f]{1,64}))", [this](const Request& req, Response& res) {
    JobQueue* q = queue.load();
    const std::string id = req.matches[1];
    auto job = q ? q->find(id) : nullptr;
    if (!job) return send_error(req, res, 404, "[serve] no job '" + id + "' (unknown, or its result was dropped)");
    bool cancelled = q->cancel(id);
    bool deleted = !cancelled && q->remove(id);
    json j = job_json(req, *job, q->view(job));
    j["cancelled"] = cancelled;
    j["deleted"] = deleted;
    res.set_content(j.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
  });
  // Server-sent events: one "progress" event per change (at most every 0.5 s), then "done".
  S.Get(R"(/v1/jobs/([0-9a-f]{1,64})/events)", [this](const Request& req, Response& res) {
    JobQueue* q = queue.load();
    auto job = q ? q->find(req.matches[1]) : nullptr;
    if (!job) return send_error(req, res, 404, "[serve] no job '" + std::string(req.matches[1]) + "'");
    auto last = std::make_shared<std::string>();
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider("text/event-stream", [this, q, job, last, req](size_t, httplib::DataSink& sink) {
      JobView v = q->wait(job, std::chrono::milliseconds(500));
      std::string data = job_json(req, *job, v).dump(-1, ' ', false, json::error_handler_t::replace);
      if (data != *last || v.finished()) {
        std::string ev = std::string("event: ") + (v.finished() ? "done" : "progress") + "\ndata: " + data + "\n\n";
        if (!sink.write(ev.data(), ev.size())) return false;
        *last = data;
      } else {
        static const std::string ping = ": ping\n\n";
        if (!sink.write(ping.data(), ping.size())) return false;
      }
      if (v.finished()) sink.done();
      return true;
    });
  });
  S.Get(R"(/v1/files/([0-9a-f]{1,64})-([0-9]{1,3})\.png)", [this](const Request& req, Response& res) {
    JobQueue* q = queue.load();
    auto v = q ? q->view(std::string(req.matches[1])) : std::nullopt;
    size_t i = std::stoul(req.matches[2]);
    if (!v || !v->result || i >= v->result->images.size())
      return send_error(req, res, 404,
                        "[serve] no file '" + req.path.substr(10) + "' (unknown, not finished, or dropped)");
    const auto& png = v->result->images[i].png;
    res.set_content(std::string(png.begin(), png.end()), "image/png");
  });

  // AUTOMATIC1111.
  auto sdapi_images = [this](GenerateRequest r, const Request& req, Response& res) {
    auto v = run_sync(r, req, res);
    if (!v) return;
    json images = json::array(), seeds = json::array(), infotexts = json::array();
    for (const JobImage& img : v->result->images) {
      images.push_back(base64_encode(img.png.data(), img.png.size()));
      seeds.push_back(img.seed);
      infotexts.push_back(img.infotext);
    }
    json info = {{"prompt", r.prompt},
                 {"all_prompts", json::array()},
                 {"negative_prompt", r.negative_prompt},
                 {"all_negative_prompts", json::array()},
                 {"seed", r.seeds[0]},
                 {"all_seeds", seeds},
                 {"subseed", -1},
                 {"all_subseeds", json::array()},
                 {"width", r.width},
                 {"height", r.height},
                 {"sampler_name", "Euler"},
                 {"cfg_scale", r.guidance},
                 {"steps", r.steps},
                 {"batch_size", r.num_images},
                 {"sd_model_name", opt.model_name},
                 {"infotexts", infotexts},
                 {"job_timestamp", long(std::time(nullptr))}};
    for (size_t i = 0; i < images.size(); ++i) {
      info["all_prompts"].push_back(r.prompt);
      info["all_negative_prompts"].push_back(r.negative_prompt);
      info["all_subseeds"].push_back(-1);
    }
    json params = parse_json_text(req.body, "request body", "[serve] ");
    res.set_content(json{{"images", images},
                         {"parameters", params},
                         {"info", info.dump(-1, ' ', false, json::error_handler_t::replace)}}
                        .dump(-1, ' ', false, json::error_handler_t::replace),
                    "application/json");
  };
  S.Post("/sdapi/v1/txt2img", [this, sdapi_images](const Request& req, Response& res) {
    sdapi_images(parse_sdapi_txt2img(req.body, opt.defaults, opt.limits), req, res);
  });
  S.Post("/sdapi/v1/img2img", [this, sdapi_images](const Request& req, Response& res) {
    sdapi_images(parse_sdapi_img2img(req.body, opt.defaults, opt.limits), req, res);
  });
  S.Get("/sdapi/v1/progress", [this](const Request&, Response& res) {
    JobQueue* q = queue.load();
    auto v = q ? q->running() : std::nullopt;
    QueueStats s = q ? q->stats() : QueueStats{};
    double progress = v && v->num_steps ? double(v->step) / v->num_steps : 0.0;
    json state = {{"skipped", false},
                  {"interrupted", false},
                  {"job", v ? v->id : ""},
                  {"job_count", s.queued + (s.running ? 1 : 0)},
                  {"job_no", 0},
                  {"sampling_step", v ? v->step : 0},
                  {"sampling_steps", v ? v->num_steps : 0}};
    res.set_content(json{{"progress", progress},
                         {"eta_relative", v ? v->eta_seconds : 0.0},
                         {"state", state},
                         {"current_image", nullptr},
                         {"textinfo", nullptr}}
                        .dump(),
                    "application/json");
  });
  S.Post("/sdapi/v1/interrupt", [this](const Request&, Response& res) {
    JobQueue* q = queue.load();
    std::string id = q ? q->cancel_running() : "";
    res.set_content(json{{"interrupted", id.empty() ? json(nullptr) : json(id)}}.dump(), "application/json");
  });
  S.Get("/sdapi/v1/sd-models", [this](const Request&, Response& res) {
    json m = {{"title", opt.model_name}, {"model_name", opt.model_name}, {"hash", nullptr},
              {"sha256", nullptr},       {"filename", opt.model_path},   {"config", nullptr}};
    res.set_content(json::array({m}).dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
  });
  S.Get("/sdapi/v1/options", [this](const Request&, Response& res) {
    json o;
    {
      std::lock_guard lk(options_mu);
      o = sd_options;
    }
    o["sd_model_checkpoint"] = opt.model_name;
    o["samples_format"] = "png";
    res.set_content(o.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
  });
  S.Post("/sdapi/v1/options", [this](const Request& req, Response& res) {
    json j;
    try {
      j = parse_json_text(req.body, "request body", "[serve] ");
    } catch (const Error& e) {
      throw RequestError(400, "", e.what());
    }
    if (!j.is_object())
      throw RequestError(400, "", "[serve] the request body is " + json_excerpt(j, 60) + ", expected a JSON object");
    if (j.size() > 256) throw RequestError(400, "", "[serve] more than 256 options in one request");
    if (auto it = j.find("sd_model_checkpoint"); it != j.end() && !it->is_null() && *it != opt.model_name)
      throw RequestError(400, "sd_model_checkpoint",
                         "[serve] 'sd_model_checkpoint' is " + json_excerpt(*it, 60) + ": this server runs only '" +
                             opt.model_name + "' (restart it with another -m)");
    if (auto it = j.find("samples_format"); it != j.end() && !it->is_null() && *it != "png")
      throw RequestError(400, "samples_format",
                         "[serve] 'samples_format' is " + json_excerpt(*it, 60) + ": only \"png\" is written");
    // Kept options are bounded (1024 keys of at most 4 KB each): they live as long as the server.
    for (auto& [k, v] : j.items())
      if (k.size() > 256 || v.dump(-1, ' ', false, json::error_handler_t::replace).size() > 4096)
        throw RequestError(400, k.substr(0, 256),
                           "[serve] option '" + k.substr(0, 64) + "' is longer than 4096 bytes (or its name than 256)");
    std::lock_guard lk(options_mu);
    for (auto& [k, v] : j.items())
      if (k != "sd_model_checkpoint" && k != "samples_format" && (sd_options.contains(k) || sd_options.size() < 1024))
        sd_options[k] = v;
    res.set_content("null", "application/json");
  });
}

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  auto& o = impl_->opt;
  auto& S = impl_->http;
  const int threads = std::max(4, o.http_threads);
  S.new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
  S.set_payload_max_length(o.max_body_bytes);
  S.set_read_timeout(o.read_timeout_s, 0);
  S.set_write_timeout(o.write_timeout_s, 0);
  S.set_keep_alive_timeout(5);
  S.set_keep_alive_max_count(100);
  impl_->routes();
}

Server::~Server() { stop(); }

int Server::bind() {
  auto& o = impl_->opt;
  int port = o.port;
  if (o.port == 0) {
    port = impl_->http.bind_to_any_port(o.host);
    if (port <= 0) fail("[serve] cannot listen on ", o.host, " (any port)");
  } else if (!impl_->http.bind_to_port(o.host, o.port)) {
    fail("[serve] cannot listen on ", o.host, ":", o.port,
         " (address in use, not an address of this machine, or a port below 1024 without privileges)");
  }
  impl_->watch.start(port);
  return port;
}

void Server::serve() { impl_->http.listen_after_bind(); }
void Server::set_queue(JobQueue* q) { impl_->queue = q; }
void Server::begin_shutdown() { impl_->stopping = true; }
void Server::stop() {
  if (impl_->http.is_running()) impl_->http.stop();
  impl_->watch.stop();
}

}  // namespace zimage::server
