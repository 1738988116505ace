// HTTP(S) over libcurl with the hub's host policy: redirects are followed by hand, each hop
// checked (scheme, host) before any byte is sent to it; the token goes only to the endpoint.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace zimage::hub {

struct Url {
  std::string scheme;          // "https" / "http", lower case
  std::string host;            // lower case, without brackets
  int port = 0;                // explicit or the scheme's default
  std::string target;          // path + query, starts with '/'
  std::string origin() const;  // scheme://host:port
  std::string str() const;
};
// Parses an absolute http(s) URL; throws zimage::Error naming it otherwise.
Url parse_url(const std::string& s);
// The URL a Location header points to, relative to `base`.
Url resolve_location(const Url& base, const std::string& location);
// Percent-encodes everything but unreserved characters and (keep_slash) '/'.
std::string url_quote(const std::string& s, bool keep_slash);

// Which hosts and schemes the client may talk to.
struct HostPolicy {
  Url endpoint;
  std::vector<std::string> trusted;  // extra hosts: "host" or ".suffix" (ZIMAGE_HUB_TRUSTED_HOSTS)
  bool allow_http = false;           // ZIMAGE_HUB_ALLOW_HTTP=1
  static HostPolicy from_endpoint(const std::string& endpoint);
  // Throws "[hub] refusing ..." when `u` may not be contacted; `why` says what led there.
  void check(const Url& u, const std::string& why) const;
  bool same_origin_as_endpoint(const Url& u) const { return u.origin() == endpoint.origin(); }
};
bool is_loopback_host(const std::string& host);

struct Response {
  long status = 0;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;                            // error bodies and small answers (capped)
  std::string header(const std::string& lower_name) const;
};

struct Request {
  std::string method = "GET";  // GET or HEAD
  Url url;
  std::string token;  // sent as Authorization only to the endpoint's origin
  std::vector<std::string> headers;
  // When set, the body of a 2xx answer goes here (false = abort); otherwise into Response::body.
  std::function<bool(const char*, size_t)> sink;
  // Called once before the first body byte of a 2xx answer goes to `sink` (false = abort).
  std::function<bool(long status, const std::map<std::string, std::string>& headers)> before_body;
};

// One request, no redirect following. Throws "[hub] <what>: <curl error>" on transport errors
// (the message says whether the transfer was cut short: `interrupted` is set then).
struct TransportError {
  bool interrupted = false;
  bool aborted = false;  // sink or before_body returned false
  std::string message;
};
Response perform(const Request& r, const HostPolicy& policy, const std::string& what, TransportError* err);

}  // namespace zimage::hub
