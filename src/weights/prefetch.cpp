#include "weights/prefetch.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "core/error.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22  // Linux 5.14
#endif

namespace zimage::weights::prefetch {
namespace {

constexpr size_t kChunk = 8u << 20;  // bytes per madvise call: a released job stops within one chunk

std::atomic<int> g_override{-1};  // -1: ZIMAGE_PREFETCH decides

bool env_enabled() {
  const char* e = std::getenv("ZIMAGE_PREFETCH");
  if (!e || !*e || std::strcmp(e, "1") == 0) return true;
  if (std::strcmp(e, "0") == 0) return false;
  fail("[weights] ZIMAGE_PREFETCH must be 0 (off) or 1 (on), got \"", e, "\"");
}

// MemAvailable from /proc/meminfo in bytes (0 when it cannot be read: no limit is applied).
uint64_t mem_available() {
  FILE* f = std::fopen("/proc/meminfo", "r");
  if (!f) return 0;
  char line[256];
  unsigned long long kb = 0;
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
  std::fclose(f);
  return uint64_t(kb) * 1024;
}

struct Job {
  std::string component;
  std::vector<Range> ranges;
};

class Reader {
 public:
  ~Reader() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
      queue_.clear();
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  void push(Job j, uint64_t bytes) {
    std::lock_guard<std::mutex> l(mu_);
    if (stop_) return;
    if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
    queue_.push_back(std::move(j));
    ++stats_.jobs_queued;
    stats_.bytes_queued += bytes;
    cv_.notify_all();
  }

  void too_big() {
    std::lock_guard<std::mutex> l(mu_);
    ++stats_.jobs_too_big;
  }

  Stats stats() {
    std::lock_guard<std::mutex> l(mu_);
    return stats_;
  }

  void wait_idle() {
    std::unique_lock<std::mutex> l(mu_);
    idle_cv_.wait(l, [&] { return stop_ || (queue_.empty() && !busy_); });
  }

 private:
  void run() {
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
        if (stop_) break;
        job = std::move(queue_.front());
        queue_.pop_front();
        busy_ = true;
      }
      const bool done = read(job);
      {
        std::lock_guard<std::mutex> l(mu_);
        ++(done ? stats_.jobs_done : stats_.jobs_dropped);
        busy_ = false;
      }
      idle_cv_.notify_all();
    }
    idle_cv_.notify_all();
  }

  bool stopping() {
    std::lock_guard<std::mutex> l(mu_);
    return stop_;
  }

  // Pages one job in; false when its weights were released (or the reader stops) before the end.
  bool read(const Job& job) {
    const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
    for (const Range& r : job.ranges) {
      const uintptr_t begin = reinterpret_cast<uintptr_t>(r.data) & ~(page - 1);
      const uintptr_t end = (reinterpret_cast<uintptr_t>(r.data) + r.bytes + page - 1) & ~(page - 1);
      for (uintptr_t p = begin; p < end; p += kChunk) {
        if (stopping()) return false;
        // Only the mapping's owners keep it: when this lock is the last one, the component is gone.
        std::shared_ptr<const void> keep = r.owner.lock();
        if (!keep || keep.use_count() <= 1) return false;
        const size_t n = size_t(std::min<uintptr_t>(kChunk, end - p));
        if (r.map) {
          populate(reinterpret_cast<void*>(p), n, page);
        } else {
          madvise(reinterpret_cast<void*>(p), n, MADV_WILLNEED);
          set_method("willneed");
        }
        std::lock_guard<std::mutex> l(mu_);
        stats_.bytes_read += n;
      }
    }
    return true;
  }

  void populate(void* p, size_t n, uintptr_t page) {
    if (use_populate_ && madvise(p, n, MADV_POPULATE_READ) == 0) {
      set_method("populate_read");
      return;
    }
    if (use_populate_ && errno == EINVAL) use_populate_ = false;  // kernel before 5.14
    // Older kernels: ask for read-ahead, then fault each page in (what the forward would do).
    madvise(p, n, MADV_WILLNEED);
    const volatile unsigned char* b = static_cast<const volatile unsigned char*>(p);
    unsigned char sink = 0;
    for (size_t i = 0; i < n; i += page) sink ^= b[i];
    (void)sink;
    set_method("willneed+touch");
  }

  void set_method(const char* m) {
    std::lock_guard<std::mutex> l(mu_);
    if (stats_.method != m) stats_.method = m;
  }

  std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  std::deque<Job> queue_;
  std::thread thread_;
  bool stop_ = false, busy_ = false;
  bool use_populate_ = true;  // reader thread only
  Stats stats_;
};

Reader& reader() {
  static Reader r;
  return r;
}

}  // namespace

bool enabled() {
  const int o = g_override.load();
  if (o >= 0) return o != 0;
  return env_enabled();
}

void set_enabled(bool on) { g_override.store(on ? 1 : 0); }

void use_environment() { g_override.store(-1); }

void enqueue(const std::string& component, std::vector<Range> ranges) noexcept {
  try {
    if (ranges.empty() || !enabled()) return;
    uint64_t bytes = 0;
    for (const Range& r : ranges) bytes += r.bytes;
    const uint64_t avail = mem_available();
    if (avail && bytes > avail) {
      reader().too_big();
      return;
    }
    reader().push(Job{component, std::move(ranges)}, bytes);
  } catch (...) {
    // No thread or no memory for the list: the forward faults its pages in itself.
  }
}

Stats stats() { return reader().stats(); }

void wait_idle() { reader().wait_idle(); }

}  // namespace zimage::weights::prefetch
