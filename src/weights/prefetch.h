// Weight prefetch: one background reader that pages memory-mapped weights in ahead of their
// first use, so that reading the file overlaps with compute (the text encoder's layers while it
// runs, the transformer's while the prompt is encoded and during the first step).
//
// weights::Loader records every weight it hands out as a view of the mapping (linear and conv
// weights, dense or quantized; not gathered tables such as a token embedding), in the order the
// component asks for them, which is the order its forward uses them. When the component's
// loading ends (the Loader is destroyed) that list becomes one job. The reader runs the jobs in
// order, a few MiB at a time, with madvise(MADV_POPULATE_READ) (Linux 5.14+; else
// MADV_WILLNEED and a read of one byte per page), or, for quantized weights (Range::map false),
// MADV_WILLNEED alone: read into the page cache without mapping them into the process. Nothing
// is copied and no value changes: the pages are the ones the forward would fault in itself.
//
// A job is dropped when its weights are released before the reader reaches them (--low-memory
// frees a component after its stage), and not queued when it is larger than the memory the
// kernel reports available (MemAvailable), where reading ahead would evict what is in use.
// ZIMAGE_PREFETCH=0 turns the reader off (1, the default, on).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace zimage::weights::prefetch {

struct Range {
  std::weak_ptr<const void> owner;  // the mapping; the range is skipped once it is released
  const void* data = nullptr;
  size_t bytes = 0;
  // true: mapped into the process (MADV_POPULATE_READ), for weights the forward reads where they
  // lie; false: only read into the page cache (MADV_WILLNEED), for quantized weights, which the
  // integer GEMM packs and then releases: mapping them ahead would count the whole file in the
  // resident set on top of the packed copies (the forward's first touch maps them, a minor fault).
  bool map = true;
};

// Whether the reader is on: ZIMAGE_PREFETCH (unset, "1": on; "0": off), unless set_enabled()
// was called. Throws zimage::Error naming the value when it is anything else.
bool enabled();
// Tests and benchmarks: overrides ZIMAGE_PREFETCH for this process; use_environment() undoes it.
void set_enabled(bool on);
void use_environment();

// Queues one component's ranges (in use order). Never throws: prefetching is an optimisation.
void enqueue(const std::string& component, std::vector<Range> ranges) noexcept;

struct Stats {
  int64_t jobs_queued = 0;   // jobs handed to the reader
  int64_t jobs_done = 0;     // jobs the reader finished
  int64_t jobs_dropped = 0;  // weights released before the reader was done with them
  int64_t jobs_too_big = 0;  // not queued: larger than MemAvailable
  uint64_t bytes_queued = 0, bytes_read = 0;
  std::string method;  // "populate_read", "willneed+touch" or "willneed" (Range::map false): the last used
};
Stats stats();
// Blocks until the reader has nothing queued and is not reading (tests, benchmarks).
void wait_idle();

}  // namespace zimage::weights::prefetch
