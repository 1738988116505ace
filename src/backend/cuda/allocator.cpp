#include "backend/cuda/allocator.h"

#include "backend/cuda/context.h"
#include "backend/cuda/cuda_check.h"

namespace zimage::cuda {

namespace {
constexpr size_t kMiB = size_t(1) << 20;
}

CachingAllocator& CachingAllocator::instance() {
  // Never destroyed: blocks may be released by static tensors after main() returns, when the
  // CUDA runtime may already be shut down.
  static CachingAllocator* a = new CachingAllocator();
  return *a;
}

CachingAllocator::~CachingAllocator() = default;

size_t CachingAllocator::bucket_size(size_t bytes) {
  if (bytes == 0) bytes = 1;
  if (bytes < kMiB) {
    size_t b = 512;
    while (b < bytes) b <<= 1;
    return b;
  }
  const size_t step = 2 * kMiB;
  return (bytes + step - 1) / step * step;
}

void* CachingAllocator::allocate(size_t bytes, const char* component) {
  const size_t b = bucket_size(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.allocations;
  auto it = free_.find(b);
  void* p = nullptr;
  if (it != free_.end() && !it->second.empty()) {
    p = it->second.back();
    it->second.pop_back();
    stats_.bytes_cached -= b;
    ++stats_.cache_hits;
  } else {
    cudaError_t e = cudaMalloc(&p, b);
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      free_cached_locked();
      e = cudaMalloc(&p, b);
    }
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      fail("[", component, "] CUDA out of memory: asked for ", bytes, " bytes (", bytes / kMiB,
           " MiB); this process holds ", stats_.bytes_in_use / kMiB, " MiB, the device has ", free_b / kMiB,
           " MiB free of ", total_b / kMiB, " MiB");
    }
    if (e != cudaSuccess) throw_cuda_error(e, "cudaMalloc", __FILE__, __LINE__);
    ++stats_.device_mallocs;
  }
  stats_.bytes_in_use += b;
  if (stats_.bytes_in_use > stats_.peak_bytes_in_use) stats_.peak_bytes_in_use = stats_.bytes_in_use;
  if (poison_) ZI_CUDA_CHECK(cudaMemsetAsync(p, 0xFF, b, ctx().stream));
  return p;
}

void CachingAllocator::release(void* p, size_t bytes) {
  if (!p) return;
  const size_t b = bucket_size(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  free_[b].push_back(p);
  stats_.bytes_in_use -= b;
  stats_.bytes_cached += b;
}

void CachingAllocator::free_cached_locked() {
  // cudaFree synchronises the device, so pending kernels that used these blocks are done.
  for (auto& [size, blocks] : free_) {
    for (void* p : blocks) {
      cudaFree(p);
      ++stats_.device_frees;
    }
    stats_.bytes_cached -= size * blocks.size();
    blocks.clear();
  }
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  free_cached_locked();
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace zimage::cuda
