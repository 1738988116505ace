// What cpp-httplib 0.11 does not bound: the total time and bytes of a request's headers (it
// has only per-read timeouts and no limit on the number of header lines). A watchdog thread
// looks at the server's connections and shuts down those still in their header phase after
// `timeout_s` seconds or `max_bytes` received bytes (kernel counters, TCP_INFO).
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>

namespace zimage::server {

class HeaderWatch {
 public:
  HeaderWatch(double timeout_s, uint64_t max_bytes, bool log);
  ~HeaderWatch();
  // Starts watching the connections accepted on this local port.
  void start(int local_port);
  void stop();
  // The request's headers are complete (pre-routing): the connection is out of the header phase.
  void headers_done(const std::string& addr, int port);
  // The response is sent: the next request's headers start (keep-alive).
  void request_done(const std::string& addr, int port);
  uint64_t dropped() const { return dropped_; }

 private:
  struct Conn {
    bool in_headers = true, reset = false, seen = false;
    std::chrono::steady_clock::time_point since;
    uint64_t base = 0;
  };
  void loop(int local_port);

  double timeout_s_;
  uint64_t max_bytes_;
  bool log_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::map<std::string, Conn> conns_;
  std::atomic<uint64_t> dropped_{0};
  std::thread thread_;
};

}  // namespace zimage::server
