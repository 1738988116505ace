#include "hub/http.h"

#include <curl/curl.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>

#include "core/error.h"

namespace zimage::hub {

namespace {
std::string lower(std::string s) {
  for (auto& c : s) c = char(std::tolower((unsigned char)c));
  return s;
}
int default_port(const std::string& scheme) { return scheme == "https" ? 443 : 80; }

bool host_char_ok(char c) { return std::isalnum((unsigned char)c) || c == '-' || c == '.' || c == ':' || c == '_'; }

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}
}  // namespace

std::string Url::origin() const { return scheme + "://" + host + ":" + std::to_string(port); }

std::string Url::str() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  std::string s = scheme + "://" + h;
  // Two appends, not `":" + std::to_string(port)`: GCC 12 reports a false -Wrestrict in
  // operator+(const char*, std::string&&) at -O3 (GCC bug 105329).
  if (port != default_port(scheme)) s.append(":").append(std::to_string(port));
  return s + target;
}

Url parse_url(const std::string& s) {
  auto bad = [&](const char* why) -> Url { fail("[hub] invalid URL '", s, "': ", why); };
  Url u;
  size_t p = s.find("://");
  if (p == std::string::npos) return bad("no scheme");
  u.scheme = lower(s.substr(0, p));
  if (u.scheme != "http" && u.scheme != "https") return bad("only http and https are supported");
  size_t a = p + 3;
  size_t e = s.find_first_of("/?#", a);
  std::string auth = s.substr(a, e == std::string::npos ? std::string::npos : e - a);
  if (auth.find('@') != std::string::npos) return bad("credentials in the URL are not supported");
  std::string port;
  if (!auth.empty() && auth[0] == '[') {
    size_t rb = auth.find(']');
    if (rb == std::string::npos) return bad("unbalanced '['");
    u.host = auth.substr(1, rb - 1);
    if (rb + 1 < auth.size()) {
      if (auth[rb + 1] != ':') return bad("garbage after ']'");
      port = auth.substr(rb + 2);
    }
  } else {
    size_t c = auth.rfind(':');
    u.host = auth.substr(0, c);
    if (c != std::string::npos) port = auth.substr(c + 1);
  }
  u.host = lower(u.host);
  if (u.host.empty()) return bad("no host");
  if (!std::all_of(u.host.begin(), u.host.end(), host_char_ok)) return bad("invalid host");
  if (port.empty()) {
    u.port = default_port(u.scheme);
  } else {
    if (port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return bad("invalid port");
    u.port = std::atoi(port.c_str());
    if (u.port < 1 || u.port > 65535) return bad("invalid port");
  }
  u.target = e == std::string::npos ? "/" : s.substr(e);
  if (u.target[0] != '/') u.target = "/" + u.target;
  if (size_t h = u.target.find('#'); h != std::string::npos) u.target.resize(h);
  for (char c : u.target)
    if ((unsigned char)c <= 0x20 || c == 0x7f) return bad("control character or space in the path");
  return u;
}

Url resolve_location(const Url& base, const std::string& loc) {
  if (loc.empty()) fail("[hub] redirect from ", base.str(), " without a Location");
  if (loc.find("://") != std::string::npos && loc.find("://") < loc.find_first_of("/?#")) return parse_url(loc);
  if (loc.rfind("//", 0) == 0) return parse_url(base.scheme + ":" + loc);
  Url u = base;
  if (loc[0] == '/') {
    u.target = loc;
  } else {
    std::string path = base.target.substr(0, base.target.find('?'));
    u.target = path.substr(0, path.rfind('/') + 1) + loc;
  }
  return parse_url(u.str());  // re-validates
}

std::string url_quote(const std::string& s, bool keep_slash) {
  static const char* hex = "0123456789ABCDEF";
  std::string o;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
      o += char(c);
    } else {
      o += '%';
      o += hex[c >> 4];
      o += hex[c & 15];
    }
  }
  return o;
}

bool is_loopback_host(const std::string& h) { return h == "localhost" || h == "::1" || h.rfind("127.", 0) == 0; }

HostPolicy HostPolicy::from_endpoint(const std::string& endpoint) {
  HostPolicy p;
  p.endpoint = parse_url(endpoint);
  if (const char* t = std::getenv("ZIMAGE_HUB_TRUSTED_HOSTS")) {
    std::string s = t;
    size_t a = 0;
    while (a <= s.size()) {
      size_t b = s.find(',', a);
      std::string h = lower(s.substr(a, b == std::string::npos ? std::string::npos : b - a));
      h.erase(0, h.find_first_not_of(' '));
      h.erase(h.find_last_not_of(' ') + 1);
      if (!h.empty()) p.trusted.push_back(h);
      if (b == std::string::npos) break;
      a = b + 1;
    }
  }
  if (const char* a = std::getenv("ZIMAGE_HUB_ALLOW_HTTP")) p.allow_http = std::string(a) == "1";
  return p;
}

void HostPolicy::check(const Url& u, const std::string& why) const {
  auto host_ok = [&] {
    auto under = [&](const std::string& domain) {
      return u.host == domain || (u.host.size() > domain.size() &&
                                  u.host.compare(u.host.size() - domain.size(), domain.size(), domain) == 0 &&
                                  u.host[u.host.size() - domain.size() - 1] == '.');
    };
    if (under(endpoint.host)) return true;
    // The official hub serves large files from its CDN hosts (cdn-lfs*.hf.co, cas-bridge.xethub.hf.co, ...).
    if (endpoint.host == "huggingface.co" || endpoint.host == "hf.co")
      if (under("huggingface.co") || under("hf.co")) return true;
    for (const auto& t : trusted)
      if (t[0] == '.' ? under(t.substr(1)) : u.host == t) return true;
    return false;
  };
  if (!host_ok())
    fail("[hub] refusing ", why, ": ", u.str(), " is on host '", u.host, "', neither the endpoint's (", endpoint.host,
         ") nor a hub CDN host (ZIMAGE_HUB_TRUSTED_HOSTS adds hosts)");
  if (u.scheme == "https") return;
  if (allow_http) return;
  if (endpoint.scheme == "http" && is_loopback_host(endpoint.host) && is_loopback_host(u.host)) return;
  fail("[hub] refusing ", why, ": ", u.str(),
       " is not HTTPS (plain http is allowed only for a loopback endpoint, or with "
       "ZIMAGE_HUB_ALLOW_HTTP=1)");
}

std::string Response::header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

namespace {
struct Ctx {
  CURL* curl;
  const Request* req;
  Response* resp;
  bool aborted = false;
  bool started = false;
  long status() const {
    long s = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &s);
    return s;
  }
};

size_t on_header(char* buf, size_t size, size_t n, void* user) {
  auto* c = static_cast<Ctx*>(user);
  std::string line(buf, size * n);
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.pop_back();
  if (line.rfind("HTTP/", 0) == 0) {
    c->resp->headers.clear();  // a new status line (e.g. after 100 Continue)
  } else if (size_t p = line.find(':'); p != std::string::npos) {
    std::string v = line.substr(p + 1);
    v.erase(0, v.find_first_not_of(" \t"));
    c->resp->headers[lower(line.substr(0, p))] = v;
  }
  return size * n;
}

size_t on_body(char* buf, size_t size, size_t n, void* user) {
  auto* c = static_cast<Ctx*>(user);
  const size_t len = size * n;
  const long st = c->status();
  if (c->req->sink && st >= 200 && st < 300) {
    if (!c->started) {
      c->started = true;
      if (c->req->before_body && !c->req->before_body(st, c->resp->headers)) {
        c->aborted = true;
        return 0;
      }
    }
    if (!c->req->sink(buf, len)) {
      c->aborted = true;
      return 0;
    }
    return len;
  }
  // Error pages and API answers: kept up to 64 MiB (a hub listing is a few hundred KB).
  if (c->resp->body.size() + len > (64u << 20)) return 0;
  c->resp->body.append(buf, len);
  return len;
}

struct Easy {
  CURL* h = nullptr;
  Easy() {
    global_init();
    h = curl_easy_init();
  }
  ~Easy() {
    if (h) curl_easy_cleanup(h);
  }
};
}  // namespace

Response perform(const Request& r, const HostPolicy& policy, const std::string& what, TransportError* err) {
  policy.check(r.url, what);
  thread_local Easy easy;  // one connection cache per thread
  CURL* h = easy.h;
  if (!h) fail("[hub] cannot initialise libcurl");
  curl_easy_reset(h);
  Response resp;
  Ctx ctx{h, &r, &resp};
  const std::string url = r.url.str();
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
  // A stalled transfer (less than 1 byte/s for 60 s) is an error, resumable by running again.
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "zimage.cpp/0.1 (libcurl)");
  if (r.method == "HEAD") curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  curl_slist* hdrs = nullptr;
  for (const auto& x : r.headers) hdrs = curl_slist_append(hdrs, x.c_str());
  std::string auth;
  if (!r.token.empty() && policy.same_origin_as_endpoint(r.url)) {
    auth = "Authorization: Bearer " + r.token;
    hdrs = curl_slist_append(hdrs, auth.c_str());
  }
  hdrs = curl_slist_append(hdrs, "Accept-Encoding: identity");
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &ctx);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &ctx);
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  CURLcode rc = curl_easy_perform(h);
  curl_slist_free_all(hdrs);
  resp.status = ctx.status();
  if (rc != CURLE_OK) {
    TransportError te;
    te.aborted = ctx.aborted;
    te.interrupted = rc == CURLE_PARTIAL_FILE || rc == CURLE_RECV_ERROR || rc == CURLE_OPERATION_TIMEDOUT ||
                     rc == CURLE_GOT_NOTHING || rc == CURLE_SEND_ERROR;
    te.message = std::string(what) + " (" + url + "): " + (errbuf[0] ? errbuf : curl_easy_strerror(rc));
    if (!err) fail("[hub] ", te.message);
    *err = te;
    resp.status = 0;
  }
  return resp;
}

}  // namespace zimage::hub
