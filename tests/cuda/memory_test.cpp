// Caching allocator and DeviceTensor: buckets, reuse, statistics, out-of-memory errors, copies.
#include <gtest/gtest.h>

#include "backend/cuda/allocator.h"
#include "backend/cuda/ops.h"
#include "cuda/cuda_test_util.h"

namespace zimage::cuda {
namespace {

using test::random_tensor;

TEST(CudaAllocator, BucketSizes) {  // host arithmetic only: runs without a GPU
  EXPECT_EQ(CachingAllocator::bucket_size(0), 512u);
  EXPECT_EQ(CachingAllocator::bucket_size(1), 512u);
  EXPECT_EQ(CachingAllocator::bucket_size(512), 512u);
  EXPECT_EQ(CachingAllocator::bucket_size(513), 1024u);
  EXPECT_EQ(CachingAllocator::bucket_size((1u << 20) - 1), 1u << 20);
  EXPECT_EQ(CachingAllocator::bucket_size(1u << 20), 2u << 20);
  EXPECT_EQ(CachingAllocator::bucket_size((2u << 20) + 1), 4u << 20);
  EXPECT_EQ(CachingAllocator::bucket_size(size_t(3) << 30), size_t(3) << 30);
}

TEST(CudaAllocator, ReusesFreedBlocksOfTheSameBucket) {
  ZI_REQUIRE_GPU();
  auto& a = CachingAllocator::instance();
  const AllocatorStats s0 = a.stats();
  void* p = a.allocate(3000, "test");
  a.release(p, 3000);
  void* q = a.allocate(4000, "test");  // same 4 KiB bucket
  EXPECT_EQ(p, q);
  const AllocatorStats s1 = a.stats();
  EXPECT_EQ(s1.allocations - s0.allocations, 2u);
  EXPECT_GE(s1.cache_hits - s0.cache_hits, 1u);
  EXPECT_EQ(s1.bytes_in_use - s0.bytes_in_use, 4096u);
  a.release(q, 4000);
  EXPECT_EQ(a.stats().bytes_in_use, s0.bytes_in_use);
  a.empty_cache();
  EXPECT_EQ(a.stats().bytes_cached, 0u);
}

TEST(CudaAllocator, OutOfMemoryNamesComponentAndBytes) {
  ZI_REQUIRE_GPU();
  const size_t huge = size_t(1) << 50;  // 1 PiB
  try {
    CachingAllocator::instance().allocate(huge, "transformer");
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.rfind("[transformer] CUDA out of memory", 0), 0u) << m;
    EXPECT_NE(m.find(std::to_string(huge)), std::string::npos) << m;
  }
  // The device is still usable afterwards.
  DeviceTensor t = DeviceTensor::upload(random_tensor({4, 5}, 1));
  EXPECT_EQ(t.download().to_vector(), random_tensor({4, 5}, 1).to_vector());
}

TEST(CudaDeviceTensor, RoundTripsAndConvertsExactly) {
  ZI_REQUIRE_GPU();
  const Tensor h = random_tensor({3, 7, 5}, 2, -100.f, 100.f);
  EXPECT_EQ(DeviceTensor::upload(h).download().to_vector(), h.to_vector());
  // f32 -> bf16 on upload is round-to-nearest-even, as core's conversion.
  const Tensor hb = DeviceTensor::upload(h, DType::BF16).download(DType::BF16);
  EXPECT_EQ(hb.to_vector(), h.to(DType::BF16).to_vector());
  // Device-side conversion agrees bit for bit with the host's.
  const DeviceTensor d = DeviceTensor::upload(h);
  EXPECT_EQ(convert(d, DType::BF16).download().to_vector(), h.to(DType::BF16).to_vector());
  EXPECT_EQ(convert(d, DType::F16).download().to_vector(), h.to(DType::F16).to_vector());
}

TEST(CudaDeviceTensor, ViewsShareStorage) {
  ZI_REQUIRE_GPU();
  const Tensor h = random_tensor({6, 4}, 3);
  const DeviceTensor d = DeviceTensor::upload(h);
  const DeviceTensor s = d.slice0(2, 5);
  EXPECT_EQ(s.shape(), (Shape{3, 4}));
  EXPECT_EQ(s.download().to_vector(), h.slice0(2, 5).to_vector());
  EXPECT_EQ(d.reshape({24}).download().to_vector(), h.to_vector());
  EXPECT_THROW(d.reshape({5, 5}), Error);
  EXPECT_THROW(d.slice0(4, 7), Error);
  const DeviceTensor z = DeviceTensor::zeros(DType::BF16, {3, 3});
  for (float v : z.download().to_vector()) EXPECT_EQ(v, 0.f);
}

}  // namespace
}  // namespace zimage::cuda
