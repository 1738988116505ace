// GFLOP/s of the CPU attention kernels at Z-Image-Turbo shapes (30 heads × 128, joint image +
// caption sequence) and a Qwen3 text-encoder shape (32 q / 8 kv heads, causal). Flops counted as
// 4·D·H per (query, key) pair the kernel must visit (all pairs; the lower triangle when causal).
//   bench_attention [--threads N] [--big] [--no-baseline] [--min-seconds S]
// --big adds S = 16,500 (2048×2048); --no-baseline skips the plain loops the AVX-512 kernels replaced.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/kernels.h"
#include "core/dtype.h"
#include "ops/ops.h"

namespace {

using Kernel = void (*)(const float*, const float*, const float*, float*, int64_t, int64_t, int64_t, int64_t, int64_t,
                        int64_t, float, bool, const int64_t*);

struct Shape {
  const char* name;
  int64_t S, Hq, Hkv, D;
  bool causal;
};

std::vector<float> random_bf16(int64_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd;
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = zimage::round_bf16(nd(g));
  return v;
}

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

struct Timing {
  double wall, cpu;  // seconds per call: elapsed, and CPU time of all threads
};

// One warm-up call, then calls until min_seconds have passed (at least one). On a shared machine
// the CPU time (divided by the thread count) shows what the kernel costs when it has the cores.
Timing time_kernel(Kernel f, const Shape& s, const std::vector<float>& q, const std::vector<float>& k,
                   const std::vector<float>& v, std::vector<float>& out, double min_seconds) {
  const float scale = 1.f / std::sqrt(float(s.D));
  auto call = [&] {
    f(q.data(), k.data(), v.data(), out.data(), 1, s.S, s.S, s.Hq, s.Hkv, s.D, scale, s.causal, nullptr);
  };
  call();
  int reps = 0;
  const auto t0 = std::chrono::steady_clock::now();
  const double c0 = cpu_seconds();
  double el = 0;
  do {
    call();
    ++reps;
    el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  } while (el < min_seconds);
  return {el / reps, (cpu_seconds() - c0) / reps};
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 0;
  bool big = false, baseline = true;
  double min_seconds = 1.0;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc)
      threads = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--big"))
      big = true;
    else if (!std::strcmp(argv[i], "--no-baseline"))
      baseline = false;
    else if (!std::strcmp(argv[i], "--min-seconds") && i + 1 < argc)
      min_seconds = std::atof(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--threads N] [--big] [--no-baseline] [--min-seconds S]\n", argv[0]);
      return 2;
    }
  }
  if (threads > 0) zimage::ops::set_num_threads(threads);
  std::printf("threads %d, AVX-512 %s, AVX-512 BF16 %s, AMX-BF16 %s\n", zimage::ops::num_threads(),
              zimage::cpu::cpu_has_avx512() ? "yes" : "no", zimage::cpu::cpu_has_avx512_bf16() ? "yes" : "no",
              zimage::cpu::cpu_has_amx_bf16() ? "yes" : "no");

  std::vector<Shape> shapes = {{"dit 512x512", 1100, 30, 30, 128, false},
                               {"dit 1024x1024", 4200, 30, 30, 128, false},
                               {"qwen3 te", 300, 32, 8, 128, true}};
  if (big) shapes.push_back({"dit 2048x2048", 16500, 30, 30, 128, false});

  struct Path {
    const char* name;
    Kernel fast, old;
    bool available;
  };
  const Kernel bf16_amx = [](const float* q, const float* k, const float* v, float* o, int64_t B, int64_t Sq,
                             int64_t Sk, int64_t Hq, int64_t Hkv, int64_t D, float scale, bool causal,
                             const int64_t* kv) {
    zimage::cpu::attention_torch_bf16_avx512(q, k, v, o, B, Sq, Sk, Hq, Hkv, D, scale, causal, kv, true);
  };
  const Kernel bf16_avx = [](const float* q, const float* k, const float* v, float* o, int64_t B, int64_t Sq,
                             int64_t Sk, int64_t Hq, int64_t Hkv, int64_t D, float scale, bool causal,
                             const int64_t* kv) {
    zimage::cpu::attention_torch_bf16_avx512(q, k, v, o, B, Sq, Sk, Hq, Hkv, D, scale, causal, kv, false);
  };
  const Path paths[] = {
      {"f32 ", zimage::cpu::attention_avx512, zimage::cpu::attention_generic, zimage::cpu::cpu_has_avx512()},
      {"bf16 amx", bf16_amx, zimage::cpu::attention_torch_bf16_generic, zimage::cpu::cpu_has_amx_bf16()},
      {"bf16 avx", bf16_avx, zimage::cpu::attention_torch_bf16_generic, zimage::cpu::cpu_has_avx512_bf16()}};

  // GFLOP/s from elapsed time, and from CPU time (flops / (CPU seconds / threads)).
  std::printf("%-15s %6s %5s  %-8s %11s %11s %11s %11s\n", "shape", "S", "heads", "path", "old wall", "old cpu",
              "new wall", "new cpu");
  const double threads_used = zimage::ops::num_threads();
  for (const Shape& s : shapes) {
    const auto q = random_bf16(s.S * s.Hq * s.D, 1), k = random_bf16(s.S * s.Hkv * s.D, 2),
               v = random_bf16(s.S * s.Hkv * s.D, 3);
    std::vector<float> out(q.size());
    const double pairs = s.causal ? double(s.S) * double(s.S + 1) / 2 : double(s.S) * double(s.S);
    const double gflop = 4.0 * pairs * double(s.D) * double(s.Hq) * 1e-9;
    for (const Path& p : paths) {
      if (!p.available) continue;
      const Timing tn = time_kernel(p.fast, s, q, k, v, out, min_seconds);
      std::printf("%-15s %6lld %2lld/%-2lld  %-8s", s.name, (long long)s.S, (long long)s.Hq, (long long)s.Hkv, p.name);
      if (baseline) {
        const Timing to = time_kernel(p.old, s, q, k, v, out, 0.0);
        std::printf(" %11.1f %11.1f", gflop / to.wall, gflop * threads_used / to.cpu);
      } else {
        std::printf(" %11s %11s", "-", "-");
      }
      std::printf(" %11.1f %11.1f\n", gflop / tn.wall, gflop * threads_used / tn.cpu);
      std::fflush(stdout);
    }
  }
  return 0;
}
