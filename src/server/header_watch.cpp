#include "server/header_watch.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <set>
#include <vector>

namespace zimage::server {
namespace {

using Clock = std::chrono::steady_clock;

bool endpoint(const sockaddr_storage& s, std::string& addr, int& port) {
  char buf[INET6_ADDRSTRLEN] = "";
  if (s.ss_family == AF_INET) {
    const auto& a = reinterpret_cast<const sockaddr_in&>(s);
    inet_ntop(AF_INET, &a.sin_addr, buf, sizeof buf);
    port = ntohs(a.sin_port);
  } else if (s.ss_family == AF_INET6) {
    const auto& a = reinterpret_cast<const sockaddr_in6&>(s);
    inet_ntop(AF_INET6, &a.sin6_addr, buf, sizeof buf);
    port = ntohs(a.sin6_port);
  } else {
    return false;
  }
  addr = buf;
  return true;
}

// The connection's peer as "addr:port" when fd is a TCP connection accepted on local_port.
bool connection_key(int fd, int local_port, std::string& key) {
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
  sockaddr_storage local{}, peer{};
  socklen_t ll = sizeof local, pl = sizeof peer;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &ll) != 0 ||
      getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl) != 0)
    return false;
  std::string la, pa;
  int lp = 0, pp = 0;
  if (!endpoint(local, la, lp) || lp != local_port || !endpoint(peer, pa, pp)) return false;
  key = pa + ":" + std::to_string(pp);
  return true;
}

uint64_t bytes_received(int fd) {
  tcp_info ti{};
  socklen_t n = sizeof ti;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &n) != 0) return 0;
  return ti.tcpi_bytes_received;
}

}  // namespace

HeaderWatch::HeaderWatch(double timeout_s, uint64_t max_bytes, bool log)
    : timeout_s_(timeout_s), max_bytes_(max_bytes), log_(log) {}

HeaderWatch::~HeaderWatch() { stop(); }

void HeaderWatch::start(int local_port) {
  thread_ = std::thread([this, local_port] { loop(local_port); });
}

void HeaderWatch::stop() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void HeaderWatch::headers_done(const std::string& addr, int port) {
  std::lock_guard lk(mu_);
  Conn& c = conns_[addr + ":" + std::to_string(port)];
  c.in_headers = false;
}

void HeaderWatch::request_done(const std::string& addr, int port) {
  if (addr.empty()) return;
  std::lock_guard lk(mu_);
  auto it = conns_.find(addr + ":" + std::to_string(port));
  if (it == conns_.end()) return;
  it->second.in_headers = true;
  it->second.reset = true;
}

void HeaderWatch::loop(int local_port) {
  std::unique_lock lk(mu_);
  while (!stopping_) {
    cv_.wait_for(lk, std::chrono::milliseconds(250));
    if (stopping_) break;
    lk.unlock();
    std::vector<std::pair<int, std::string>> fds;
    if (DIR* d = opendir("/proc/self/fd")) {
      while (dirent* e = readdir(d)) {
        int fd = atoi(e->d_name);
        std::string key;
        if (fd > 2 && connection_key(fd, local_port, key)) fds.push_back({fd, key});
      }
      closedir(d);
    }
    lk.lock();
    const auto now = Clock::now();
    std::set<std::string> live;
    for (auto& [fd, key] : fds) {
      live.insert(key);
      Conn& c = conns_[key];
      if (!c.seen || c.reset) {
        c.seen = true;
        c.reset = false;
        c.since = now;
        c.base = bytes_received(fd);
      }
      if (!c.in_headers) continue;
      const double age = std::chrono::duration<double>(now - c.since).count();
      const uint64_t got = bytes_received(fd) - c.base;
      if (age <= timeout_s_ && got <= max_bytes_) continue;
      std::string again;  // still the same connection (not closed and reused meanwhile)
      if (!connection_key(fd, local_port, again) || again != key) continue;
      ::shutdown(fd, SHUT_RDWR);
      ++dropped_;
      if (log_)
        std::fprintf(stderr, "zimage serve: %s dropped: request headers %s\n", key.c_str(),
                     age > timeout_s_ ? "not complete within --header-timeout" : "larger than the limit");
      c.in_headers = false;  // once
    }
    for (auto it = conns_.begin(); it != conns_.end();) it = live.count(it->first) ? std::next(it) : conns_.erase(it);
  }
}

}  // namespace zimage::server
