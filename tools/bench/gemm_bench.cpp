// bench_gemm: GFLOP/s of zimage's ops::linear (y = x·w^T, x f32 [M, K], w [N, K]) at the Z-Image
// transformer's shapes, for bf16 and f32 weights, as the model calls it (x rounded to bf16 for bf16
// weights, result allocated per call). The best bf16 figure is this machine's "measured peak" that
// tools/bench/bench.py compares a denoising step against.
//
//   bench_gemm [--threads N] [--min-seconds S] [--dtype bf16|f32|both] [--shape MxKxN ...] [--json]
//   bench_gemm --kernel-level   (prints {"cpu_kernel_level": "..."}: the level ZIMAGE_CPU or the probe picks)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "ops/ops.h"

using namespace zimage;

namespace {

struct Shape3 {
  int64_t M, K, N;
};

Tensor random_tensor(DType dt, Shape shape, uint32_t seed) {
  Tensor t = Tensor::empty(DType::F32, shape);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  float* p = t.f32();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = u(rng);
  return t.to(dt);
}

struct Result {
  double gflops_best = 0, gflops_median = 0, ms_median = 0;
  int reps = 0;
};

Result run(const Shape3& s, DType wdt, double min_seconds) {
  Tensor x = random_tensor(DType::F32, {s.M, s.K}, 1);
  Tensor w = ops::prepare_weight(random_tensor(DType::F32, {s.N, s.K}, 2), wdt);
  const double flop = 2.0 * double(s.M) * double(s.K) * double(s.N);
  // Warm-up: primitive creation and first-touch of the output happen here.
  (void)ops::linear(x, w);
  std::vector<double> secs;
  double total = 0;
  while (total < min_seconds || secs.size() < 3) {
    auto t0 = std::chrono::steady_clock::now();
    Tensor y = ops::linear(x, w);
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    secs.push_back(dt);
    total += dt;
    if (secs.size() >= 1000) break;
  }
  std::sort(secs.begin(), secs.end());
  Result r;
  r.reps = int(secs.size());
  r.ms_median = secs[secs.size() / 2] * 1e3;
  r.gflops_median = flop / secs[secs.size() / 2] / 1e9;
  r.gflops_best = flop / secs.front() / 1e9;
  return r;
}

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: bench_gemm [--threads N] [--min-seconds S] [--dtype bf16|f32|both] [--shape MxKxN ...] [--json]\n"
               "       bench_gemm --kernel-level\n"
               "default shapes: M in {1024, 4096}, K = 3840, N in {3840, 10240} (Z-Image attention / FFN linears)\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 0;
  double min_seconds = 1.0;
  std::string dtype = "both";
  bool json = false;
  std::vector<Shape3> shapes;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (a == "--threads") threads = std::atoi(next().c_str());
    else if (a == "--min-seconds") min_seconds = std::atof(next().c_str());
    else if (a == "--dtype") dtype = next();
    else if (a == "--json") json = true;
    else if (a == "--kernel-level") {
      try {
        std::printf("{\"cpu_kernel_level\": \"%s\"}\n", ops::cpu_kernel_level());
        return 0;
      } catch (const Error& e) {
        std::fprintf(stderr, "bench_gemm: error: %s\n", e.what());
        return 1;
      }
    }
    else if (a == "--shape") {
      Shape3 s{};
      std::string v = next();
      if (std::sscanf(v.c_str(), "%ldx%ldx%ld", &s.M, &s.K, &s.N) != 3 || s.M <= 0 || s.K <= 0 || s.N <= 0) usage();
      shapes.push_back(s);
    } else usage();
  }
  if (dtype != "bf16" && dtype != "f32" && dtype != "both") usage();
  if (shapes.empty()) shapes = {{1024, 3840, 3840}, {1024, 3840, 10240}, {4096, 3840, 3840}, {4096, 3840, 10240}};
  ops::set_num_threads(threads);
  std::vector<DType> dts;
  if (dtype != "f32") dts.push_back(DType::BF16);
  if (dtype != "bf16") dts.push_back(DType::F32);
  try {
    if (json) std::printf("{\"threads\": %d, \"cpu_kernel_level\": \"%s\", \"results\": [\n", ops::num_threads(),
                          ops::cpu_kernel_level());
    else std::printf("threads %d, CPU kernel level %s\n%-6s %6s %6s %6s %10s %12s %12s %5s\n", ops::num_threads(),
                     ops::cpu_kernel_level(), "dtype", "M", "K", "N", "ms(med)", "GFLOP/s(med)", "GFLOP/s(best)", "reps");
    bool first = true;
    for (DType dt : dts)
      for (const Shape3& s : shapes) {
        Result r = run(s, dt, min_seconds);
        const char* name = dt == DType::BF16 ? "bf16" : "f32";
        if (json) {
          std::printf("%s  {\"dtype\": \"%s\", \"M\": %ld, \"K\": %ld, \"N\": %ld, \"ms_median\": %.4f, "
                      "\"gflops_median\": %.2f, \"gflops_best\": %.2f, \"reps\": %d}",
                      first ? "" : ",\n", name, s.M, s.K, s.N, r.ms_median, r.gflops_median, r.gflops_best, r.reps);
        } else {
          std::printf("%-6s %6ld %6ld %6ld %10.2f %12.1f %12.1f %5d\n", name, s.M, s.K, s.N, r.ms_median, r.gflops_median,
                      r.gflops_best, r.reps);
        }
        std::fflush(stdout);
        first = false;
      }
    if (json) std::printf("\n]}\n");
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_gemm: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
