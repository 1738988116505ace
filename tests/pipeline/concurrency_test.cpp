// One ZImagePipeline shared by several threads (as a server shares it): every call gives the
// pixels it gives alone, the pipeline's thread count applies on every calling thread, and a
// callback that re-enters its own pipeline gets an error instead of a deadlock.
// Also built under ThreadSanitizer by scripts/test.sh (test_pipeline_tsan).
#include <gtest/gtest.h>

#include <omp.h>

#include <thread>

#include "ops/ops.h"
#include "util/test_util.h"
#include "zimage/pipeline.h"

using namespace zimage;

namespace {

ZImagePipeline tiny_pipeline(int num_threads) {
  PretrainedOptions po;
  po.torch_dtype = "bfloat16";  // bf16 uses the transformer's planned buffers and fused paths
  po.num_threads = num_threads;
  return ZImagePipeline::from_pretrained(test::fixture("models/tiny-fp32"), po);
}

CallParams case_params(int k) {
  CallParams p;
  p.prompt = {k % 2 ? "a red fox in the snow" : "a lighthouse at dusk, oil painting"};
  // Different sizes and CFG so that the calls' buffers and caches really differ.
  p.height = k % 2 ? 64 : 48;
  p.width = k % 3 ? 64 : 80;
  p.num_inference_steps = 3;
  p.guidance_scale = k == 2 ? 2.5f : 0.f;
  p.generator = {{uint64_t(100 + k)}};
  return p;
}

}  // namespace

TEST(PipelineConcurrency, SharedPipelineGivesEachCallItsOwnPixels) {
  ZImagePipeline pipe = tiny_pipeline(1);
  constexpr int kCalls = 3;
  std::vector<PipelineOutput> alone(kCalls);
  for (int k = 0; k < kCalls; ++k) alone[size_t(k)] = pipe(case_params(k));

  for (int trial = 0; trial < 2; ++trial) {
    std::vector<PipelineOutput> together(kCalls);
    std::vector<std::thread> threads;
    for (int k = 0; k < kCalls; ++k) threads.emplace_back([&, k] { together[size_t(k)] = pipe(case_params(k)); });
    for (auto& t : threads) t.join();
    for (int k = 0; k < kCalls; ++k) {
      ASSERT_EQ(together[size_t(k)].images.size(), 1u);
      EXPECT_EQ(together[size_t(k)].images[0].pixels, alone[size_t(k)].images[0].pixels)
          << "trial " << trial << ", call " << k;
      EXPECT_EQ(together[size_t(k)].latents.to_vector(), alone[size_t(k)].latents.to_vector());
    }
  }
}

TEST(PipelineConcurrency, ThreadCountAppliesOnEveryCallingThread) {
  // A count that differs from OpenMP's default on a fresh thread (the number of processors).
  const int n = omp_get_num_procs() + 1;
  ZImagePipeline pipe = tiny_pipeline(n);
  int seen = -1;
  CallParams p = case_params(0);
  p.num_inference_steps = 1;
  p.output_type = OutputType::Latent;
  p.callback_on_step_end = [&](ZImagePipeline&, int, float, Tensor&) { seen = ops::num_threads(); };
  std::thread([&] { pipe(p); }).join();
  EXPECT_EQ(seen, n);
}

TEST(PipelineConcurrency, CallbackThatReentersItsPipelineIsAnError) {
  ZImagePipeline pipe = tiny_pipeline(1);
  CallParams p = case_params(0);
  p.num_inference_steps = 1;
  p.output_type = OutputType::Latent;
  p.callback_on_step_end = [&](ZImagePipeline& self, int, float, Tensor&) {
    CallParams inner = case_params(1);
    self(inner);
  };
  try {
    pipe(p);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("inside a running call"), std::string::npos) << e.what();
  }
  // The pipeline is usable afterwards (the lock and owner were released).
  p.callback_on_step_end = nullptr;
  EXPECT_NO_THROW(pipe(p));
}

TEST(PipelineConcurrency, TwoPipelinesInTwoThreads) {
  // Separate pipelines share only process-wide state (kernel libraries, caches, counters).
  ZImagePipeline a = tiny_pipeline(1), b = tiny_pipeline(1);
  const PipelineOutput ra = a(case_params(0)), rb = b(case_params(1));
  PipelineOutput ta, tb;
  std::thread t1([&] { ta = a(case_params(0)); }), t2([&] { tb = b(case_params(1)); });
  t1.join();
  t2.join();
  EXPECT_EQ(ta.images.at(0).pixels, ra.images.at(0).pixels);
  EXPECT_EQ(tb.images.at(0).pixels, rb.images.at(0).pixels);
}
