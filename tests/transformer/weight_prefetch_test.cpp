// The weight prefetch reader (src/weights/prefetch.h): loading a component queues the weights it
// handed out, the reader pages them in, a released component's job is dropped, and the model's
// output is bit-identical with the reader on and off.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>

#include "core/error.h"
#include "transformer/transformer_z_image.h"
#include "util/test_util.h"
#include "weights/loader.h"
#include "weights/prefetch.h"

namespace zimage {
namespace {

namespace pf = weights::prefetch;

// Restores ZIMAGE_PREFETCH and the override when a test ends.
struct PrefetchEnv {
  PrefetchEnv() {
    if (const char* e = std::getenv("ZIMAGE_PREFETCH")) saved = e, had = true;
  }
  ~PrefetchEnv() {
    if (had)
      setenv("ZIMAGE_PREFETCH", saved.c_str(), 1);
    else
      unsetenv("ZIMAGE_PREFETCH");
    pf::use_environment();
  }
  std::string saved;
  bool had = false;
};

std::vector<Tensor> run(const ZImageTransformer2DModel& m) {
  const auto& c = m.config();
  Tensor x = test::randn({c.in_channels, 1, 8, 8}, 11);
  Tensor cap = test::randn({7, c.cap_feat_dim}, 12);
  return m.forward({x}, {0.3f}, {cap});
}

TEST(WeightPrefetch, LoadQueuesTheWeightsAndTheOutputIsUnchanged) {
  PrefetchEnv env;
  const std::string dir = test::fixture("models/tiny-fp32/transformer");
  pf::set_enabled(false);
  pf::wait_idle();
  const pf::Stats s0 = pf::stats();
  const auto off = ZImageTransformer2DModel::load(dir, DType::F32);
  pf::wait_idle();
  const pf::Stats s1 = pf::stats();
  EXPECT_EQ(s1.jobs_queued, s0.jobs_queued) << "prefetch off queued a job";

  pf::set_enabled(true);
  const auto on = ZImageTransformer2DModel::load(dir, DType::F32);
  pf::wait_idle();
  const pf::Stats s2 = pf::stats();
  EXPECT_EQ(s2.jobs_queued, s1.jobs_queued + 1);
  EXPECT_EQ(s2.jobs_done, s1.jobs_done + 1);
  // The linear weights of a float32 model are views of the file (most of its bytes): all queued, all read.
  const uint64_t queued = s2.bytes_queued - s1.bytes_queued, read = s2.bytes_read - s1.bytes_read;
  const uint64_t file = WeightStore::open_dir(dir).bytes_on_disk();
  std::printf("  prefetch: %llu of %llu file bytes queued, %llu read (page-rounded), method %s\n",
              (unsigned long long)queued, (unsigned long long)file, (unsigned long long)read, s2.method.c_str());
  EXPECT_GT(queued, file / 2);
  EXPECT_LE(queued, file);
  EXPECT_GE(read, queued);
  EXPECT_FALSE(s2.method.empty());

  const auto a = run(off), b = run(on);
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(b.size(), 1u);
  ASSERT_EQ(a[0].shape(), b[0].shape());
  EXPECT_EQ(std::memcmp(a[0].raw(), b[0].raw(), a[0].nbytes()), 0) << "prefetch changed the output";
}

TEST(WeightPrefetch, ReleasedWeightsAreDroppedKeptOnesRead) {
  PrefetchEnv env;
  pf::set_enabled(true);
  const size_t page = size_t(sysconf(_SC_PAGESIZE)), bytes = 64 * page;
  auto map = [&] {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(p, MAP_FAILED);
    return std::shared_ptr<const void>(p, [bytes](const void* q) { munmap(const_cast<void*>(q), bytes); });
  };
  pf::wait_idle();
  const pf::Stats s0 = pf::stats();
  std::shared_ptr<const void> gone = map(), kept = map();
  const void* gone_data = gone.get();
  std::vector<pf::Range> r1{{gone, gone_data, bytes}};
  gone.reset();  // the component released its weights before the reader got there
  pf::enqueue("released", std::move(r1));
  // A range that starts and ends inside pages: whole pages are read.
  pf::enqueue("kept", {{kept, static_cast<const char*>(kept.get()) + 100, bytes - 200}});
  pf::wait_idle();
  const pf::Stats s1 = pf::stats();
  EXPECT_EQ(s1.jobs_queued, s0.jobs_queued + 2);
  EXPECT_EQ(s1.jobs_dropped, s0.jobs_dropped + 1);
  EXPECT_EQ(s1.jobs_done, s0.jobs_done + 1);
  EXPECT_EQ(s1.bytes_read - s0.bytes_read, bytes);
}

TEST(WeightPrefetch, BadEnvironmentValueIsAnError) {
  PrefetchEnv env;
  pf::use_environment();
  setenv("ZIMAGE_PREFETCH", "yes", 1);
  try {
    (void)pf::enabled();
    FAIL() << "no error for ZIMAGE_PREFETCH=yes";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "[weights] ZIMAGE_PREFETCH must be 0 (off) or 1 (on), got \"yes\"");
  }
  const std::string dir = test::fixture("models/tiny-fp32/transformer");
  EXPECT_THROW(ZImageTransformer2DModel::load(dir, DType::F32), Error);
  setenv("ZIMAGE_PREFETCH", "0", 1);
  EXPECT_FALSE(pf::enabled());
  setenv("ZIMAGE_PREFETCH", "1", 1);
  EXPECT_TRUE(pf::enabled());
}

}  // namespace
}  // namespace zimage
