// Caching device allocator. cudaMalloc/cudaFree synchronise the device and cost tens of
// microseconds, so freed blocks go to per-size free lists and are handed out again.
// Sizes are rounded to buckets: powers of two from 512 B below 1 MiB, multiples of 2 MiB above,
// and a request is served only from its own bucket (no splitting: simple, and a denoising loop
// asks for the same sizes every step). All device work of this backend runs on one stream
// (context.h), so a block freed on the host may be reused at once: later work on the same stream
// is ordered after the work that used it.
// On cudaErrorMemoryAllocation the cache is released and the allocation retried once; a second
// failure throws zimage::Error naming the component, the bytes asked for and the memory state.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

namespace zimage::cuda {

struct AllocatorStats {
  size_t bytes_in_use = 0;  // handed out (bucket sizes)
  size_t bytes_cached = 0;  // in free lists
  size_t peak_bytes_in_use = 0;
  uint64_t allocations = 0;     // allocate() calls
  uint64_t cache_hits = 0;      // served from a free list
  uint64_t device_mallocs = 0;  // cudaMalloc calls
  uint64_t device_frees = 0;    // cudaFree calls
};

class CachingAllocator {
 public:
  static CachingAllocator& instance();

  // Returns device memory of at least `bytes` (256-byte aligned). `component` names the caller
  // in the out-of-memory message, e.g. "transformer".
  void* allocate(size_t bytes, const char* component);
  // Returns a block from allocate() with the same `bytes`.
  void release(void* p, size_t bytes);
  // Gives all cached blocks back to the driver.
  void empty_cache();
  AllocatorStats stats() const;
  // Tests: fill every block handed out with 0xFF bytes (NaN as f32, bf16 and f16), so an
  // element a kernel fails to write shows up as NaN instead of a stale plausible value.
  void set_poison(bool on) { poison_ = on; }

  static size_t bucket_size(size_t bytes);

 private:
  CachingAllocator() = default;
  ~CachingAllocator();
  void free_cached_locked();

  mutable std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;  // bucket size -> free blocks
  AllocatorStats stats_;
  bool poison_ = false;
};

}  // namespace zimage::cuda
