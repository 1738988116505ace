// bench_gemm: GFLOP/s of zimage's ops::linear (y = x·w^T, x f32 [M, K], w [N, K]) at the Z-Image
// transformer's shapes, for bf16 and f32 weights, as the model calls it (x rounded to bf16 for bf16
// weights, result allocated per call). The best bf16 figure is this machine's "measured peak" that
// tools/bench/bench.py compares a denoising step against. Quantized weights (random GGUF blocks,
// ops/quantized.h) in a bf16 run: q8_0 / q4_k on the integer GEMM, q8_0-dequant / q4_k-dequant on
// the dequantize-then-bf16-GEMM path; `quant` = bf16 and those four, interleaved per shape.
//
//   bench_gemm [--threads N] [--min-seconds S] [--dtype bf16|f32|both|quant|q8_0|q8_0-dequant|q4_k|q4_k-dequant]
//              [--shape MxKxN ...] [--json]
//   bench_gemm --kernel-level   (prints {"cpu_kernel_level": "..."}: the level ZIMAGE_CPU or the probe picks)
//   bench_gemm --peak [--threads N]   (the CPU's instruction peaks, best of 40 short register-only
//              loops per thread: int8 dot products (vpdpbusd zmm, 64 multiply-adds each) in GOP/s and
//              bf16 dot products (vdpbf16ps zmm, 32) in GFLOP/s, where the CPU has them)
//   bench_gemm --pack [--threads N] [--shape MxKxN ...]   (packing a quantized W [N, K] into the
//              integer GEMM's panels, cpu::qgemm_pack at the active level (ZIMAGE_CPU=portable: the
//              plain-loop reference packer): ns per weight by wall time and by the process's CPU time
//              (all threads), best of 5 after one warm-up, allocation and first touch of the packed
//              copy included; default N = 10240, K = 3840)
// GFLOP/s(cpu): by the process CPU time of the fastest call (with --threads 1 a figure that a
// shared machine's preemption does not lower; with more threads it also counts spin-waits).
// The first (warm-up) call's time is reported apart: for quantized weights it includes packing the
// matrix into the integer GEMM's layout (once per weight, ops/quantized.h).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include <omp.h>

#include "backend/cpu/cpu_level.h"
#include "backend/cpu/peak.h"
#include "backend/cpu/qgemm.h"
#include "core/error.h"
#include "core/gguf.h"
#include "ops/ops.h"
#include "ops/quantized.h"

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
  double gflops_best = 0, gflops_median = 0, ms_median = 0, ms_first = 0;
  double gflops_cpu = 0;  // by the process's CPU time of the fastest call
  int reps = 0;
};

// Random blocks of a ggml type with sane scales (d = 1e-3, dmin = 5e-4) for timing.
std::shared_ptr<ops::QuantizedMatrix> random_quantized(gguf::GgmlType t, int64_t N, int64_t K, bool dequant) {
  const gguf::TypeTraits* tt = gguf::type_traits(uint32_t(t));
  auto bytes = std::make_shared<std::string>(size_t(N * K / tt->block * tt->bytes), '\0');
  std::mt19937 rng(3);
  for (char& c : *bytes) c = char(rng() & 0xFF);
  const uint16_t d = f32_to_f16(1e-3f), dm = f32_to_f16(5e-4f);
  for (size_t i = 0; i < bytes->size(); i += size_t(tt->bytes)) {
    std::memcpy(&(*bytes)[i], &d, 2);  // Q8_0 / Q4_K: d first (Q4_K: then dmin)
    if (t == gguf::GgmlType::Q4_K) std::memcpy(&(*bytes)[i + 2], &dm, 2);
  }
  auto m = std::make_shared<ops::QuantizedMatrix>();
  m->ggml_type = uint32_t(t);
  m->rows = N;
  m->cols = K;
  m->data = reinterpret_cast<const uint8_t*>(bytes->data());
  m->row_bytes = size_t(K / tt->block * tt->bytes);
  m->keepalive = bytes;
  m->compute = DType::BF16;
  m->mode = dequant ? ops::QuantCompute::Dequant : ops::QuantCompute::Int;
  return m;
}

Result run(const Shape3& s, const std::string& kind, double min_seconds) {
  Tensor x = random_tensor(DType::F32, {s.M, s.K}, 1);
  std::shared_ptr<ops::QuantizedMatrix> q;
  Tensor w;
  if (kind == "bf16" || kind == "f32")
    w = ops::prepare_weight(random_tensor(DType::F32, {s.N, s.K}, 2), kind == "bf16" ? DType::BF16 : DType::F32);
  else
    q = random_quantized(kind.rfind("q8_0", 0) == 0 ? gguf::GgmlType::Q8_0 : gguf::GgmlType::Q4_K, s.N, s.K,
                         kind.find("dequant") != std::string::npos);
  auto call = [&] { return q ? ops::linear(x, *q) : ops::linear(x, w); };
  const double flop = 2.0 * double(s.M) * double(s.K) * double(s.N);
  // Warm-up: primitive creation, first-touch of the output and packing happen here.
  const auto tw = std::chrono::steady_clock::now();
  (void)call();
  const double first = std::chrono::duration<double>(std::chrono::steady_clock::now() - tw).count();
  std::vector<double> secs;
  double total = 0, cpu_best = 1e30;
  auto cpu_now = [] {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
  };
  while (total < min_seconds || secs.size() < 3) {
    auto t0 = std::chrono::steady_clock::now();
    const double c0 = cpu_now();
    Tensor y = call();
    cpu_best = std::min(cpu_best, cpu_now() - c0);
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
  r.ms_first = first * 1e3;
  r.gflops_cpu = flop / cpu_best / 1e9;
  return r;
}

// The instruction-peak loops (src/backend/cpu/peak_avx512.cpp): ops per second over all threads.
constexpr int64_t kIters = 2'000'000;
int64_t loop_vnni() { return cpu::peak_loop_vpdpbusd(kIters); }
int64_t loop_bf16() { return cpu::peak_loop_vdpbf16ps(kIters); }

// ops per instruction: vpdpbusd 64 multiply-adds (128 ops), vdpbf16ps 32 (64 flops)
double peak(int64_t (*loop)(), double ops_per_instr) {
  std::vector<int64_t> sink(256, 0);
  const auto t0 = std::chrono::steady_clock::now();
  int n = 1;
#pragma omp parallel
  {
#pragma omp single
    n = omp_get_num_threads();
    sink[size_t(omp_get_thread_num() % 256)] = loop();
  }
  if (sink[0] == 42) std::printf(" ");  // keeps the loops' results
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return double(n) * double(kIters) * cpu::kPeakAccumulators * ops_per_instr / dt / 1e9;
}

int run_peak(bool json) {
  const cpu::Features& f = cpu::features();
  const bool vnni = f.avx512f && f.avx512bw && f.avx512_vnni, bf16 = f.avx512f && f.avx512bw && f.avx512_bf16;
  // the best of 40 short runs of each, interleaved (a shared machine preempts some of them)
  double v = 0, b = 0;
  for (int i = 0; i < 40; ++i) {
    if (vnni) v = std::max(v, peak(loop_vnni, 128));
    if (bf16) b = std::max(b, peak(loop_bf16, 64));
  }
  if (json)
    std::printf("{\"threads\": %d, \"int8_vpdpbusd_gops\": %.1f, \"bf16_vdpbf16ps_gflops\": %.1f}\n",
                ops::num_threads(), v, b);
  else
    std::printf("threads %d: int8 vpdpbusd zmm %.1f GOP/s%s, bf16 vdpbf16ps zmm %.1f GFLOP/s%s\n", ops::num_threads(),
                v, vnni ? "" : " (no AVX-512 VNNI)", b, bf16 ? "" : " (no AVX-512 BF16)");
  return 0;
}

// Random blocks of `t` whose f16 scales are sane (1e-3, mins 5e-4): timing only.
std::string random_blocks(gguf::GgmlType t, int64_t n) {
  const gguf::TypeTraits* tt = gguf::type_traits(uint32_t(t));
  std::string b(size_t(n / tt->block * tt->bytes), '\0');
  std::mt19937 rng(5);
  for (char& c : b) c = char(rng() & 0xFF);
  const uint16_t d = f32_to_f16(1e-3f), dm = f32_to_f16(5e-4f);
  int at = 0, at_min = -1;  // where d (and dmin) lie in a block
  if (t == gguf::GgmlType::Q4_K || t == gguf::GgmlType::Q5_K) at_min = 2;
  if (t == gguf::GgmlType::Q6_K) at = 208;
  for (size_t i = 0; i < b.size(); i += size_t(tt->bytes)) {
    std::memcpy(&b[i + size_t(at)], &d, 2);
    if (at_min >= 0) std::memcpy(&b[i + size_t(at_min)], &dm, 2);
  }
  return b;
}

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

int run_pack(std::vector<Shape3> shapes, bool json) {
  if (shapes.empty()) shapes = {{1, 3840, 10240}};
  const gguf::GgmlType types[] = {gguf::GgmlType::Q8_0, gguf::GgmlType::Q4_0, gguf::GgmlType::Q4_K,
                                  gguf::GgmlType::Q5_K, gguf::GgmlType::Q6_K};
  if (json)
    std::printf("{\"threads\": %d, \"cpu_kernel_level\": \"%s\", \"pack\": [\n", ops::num_threads(),
                ops::cpu_kernel_level());
  else
    std::printf("threads %d, CPU kernel level %s\n%-6s %6s %6s %10s %12s %15s %12s\n", ops::num_threads(),
                ops::cpu_kernel_level(), "type", "K", "N", "ms(best)", "ns/weight", "ns/weight(cpu)", "GB/s(out)");
  bool first = true;
  for (const Shape3& s : shapes)
    for (gguf::GgmlType t : types) {
      const gguf::TypeTraits* tt = gguf::type_traits(uint32_t(t));
      if (s.K % tt->block != 0) continue;
      const std::string w = random_blocks(t, s.N * s.K);
      const size_t rb = size_t(s.K / tt->block * tt->bytes);
      double best = 1e30, best_cpu = 1e30;
      size_t out = 0;
      for (int r = 0; r < 6; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        const double c0 = cpu_seconds();
        const auto p = cpu::qgemm_pack(s.N, s.K, reinterpret_cast<const uint8_t*>(w.data()), rb, uint32_t(t));
        const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const double dc = cpu_seconds() - c0;
        out = p->bytes();
        if (r > 0) {
          best = std::min(best, dt);
          best_cpu = std::min(best_cpu, dc);
        }
      }
      const double nsw = best * 1e9 / double(s.N * s.K), nsc = best_cpu * 1e9 / double(s.N * s.K);
      if (json)
        std::printf(
            "%s  {\"type\": \"%s\", \"K\": %ld, \"N\": %ld, \"ms_best\": %.3f, \"ns_per_weight\": %.4f, "
            "\"ns_per_weight_cpu\": %.4f}",
            first ? "" : ",\n", tt->name, s.K, s.N, best * 1e3, nsw, nsc);
      else
        std::printf("%-6s %6ld %6ld %10.2f %12.4f %15.4f %12.2f\n", tt->name, s.K, s.N, best * 1e3, nsw, nsc,
                    double(out) / best / 1e9);
      std::fflush(stdout);
      first = false;
    }
  if (json) std::printf("\n]}\n");
  return 0;
}

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: bench_gemm [--threads N] [--min-seconds S] [--dtype bf16|f32|both|quant|q8_0|q8_0-dequant|q4_k|"
               "q4_k-dequant] [--shape MxKxN ...] [--json]\n"
               "       bench_gemm --kernel-level\n"
               "       bench_gemm --peak [--threads N] [--json]\n"
               "       bench_gemm --pack [--threads N] [--shape MxKxN ...] [--json]\n"
               "default shapes: M in {1024, 4096}, K = 3840, N in {3840, 10240} (Z-Image attention / FFN linears)\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 0;
  double min_seconds = 1.0;
  std::string dtype = "both";
  bool json = false, peak_only = false, pack_only = false;
  std::vector<Shape3> shapes;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (a == "--threads")
      threads = std::atoi(next().c_str());
    else if (a == "--min-seconds")
      min_seconds = std::atof(next().c_str());
    else if (a == "--dtype")
      dtype = next();
    else if (a == "--json")
      json = true;
    else if (a == "--peak")
      peak_only = true;
    else if (a == "--pack")
      pack_only = true;
    else if (a == "--kernel-level") {
      try {
        std::printf("{\"cpu_kernel_level\": \"%s\"}\n", ops::cpu_kernel_level());
        return 0;
      } catch (const Error& e) {
        std::fprintf(stderr, "bench_gemm: error: %s\n", e.what());
        return 1;
      }
    } else if (a == "--shape") {
      Shape3 s{};
      std::string v = next();
      if (std::sscanf(v.c_str(), "%ldx%ldx%ld", &s.M, &s.K, &s.N) != 3 || s.M <= 0 || s.K <= 0 || s.N <= 0) usage();
      shapes.push_back(s);
    } else
      usage();
  }
  const std::vector<std::string> known = {"bf16", "f32",          "both", "quant",
                                          "q8_0", "q8_0-dequant", "q4_k", "q4_k-dequant"};
  if (std::find(known.begin(), known.end(), dtype) == known.end()) usage();
  ops::set_num_threads(threads);
  if (peak_only) return run_peak(json);
  if (pack_only) {
    try {
      return run_pack(shapes, json);
    } catch (const Error& e) {
      std::fprintf(stderr, "bench_gemm: error: %s\n", e.what());
      return 1;
    }
  }
  if (shapes.empty()) {
    shapes = {{1024, 3840, 3840}, {1024, 3840, 10240}, {4096, 3840, 3840}, {4096, 3840, 10240}};
    if (dtype != "bf16" && dtype != "f32" && dtype != "both")  // quantized: also the FFN's w2 (K = 10240)
      shapes.insert(shapes.end(), {{1024, 10240, 3840}, {4096, 10240, 3840}});
  }
  std::vector<std::string> kinds;
  if (dtype == "both")
    kinds = {"bf16", "f32"};
  else if (dtype == "quant")
    kinds = {"bf16", "q8_0", "q8_0-dequant", "q4_k", "q4_k-dequant"};
  else
    kinds = {dtype};
  // quant: the kinds interleaved per shape (a shared machine's load hits them alike)
  std::vector<std::pair<std::string, Shape3>> runs;
  if (dtype == "quant")
    for (const Shape3& s : shapes)
      for (const std::string& k : kinds) runs.push_back({k, s});
  else
    for (const std::string& k : kinds)
      for (const Shape3& s : shapes) runs.push_back({k, s});
  try {
    if (json)
      std::printf("{\"threads\": %d, \"cpu_kernel_level\": \"%s\", \"results\": [\n", ops::num_threads(),
                  ops::cpu_kernel_level());
    else
      std::printf("threads %d, CPU kernel level %s\n%-12s %6s %6s %6s %10s %12s %12s %5s %10s %12s\n",
                  ops::num_threads(), ops::cpu_kernel_level(), "dtype", "M", "K", "N", "ms(med)", "GFLOP/s(med)",
                  "GFLOP/s(best)", "reps", "ms(first)", "GFLOP/s(cpu)");
    bool first = true;
    for (const auto& [kind, s] : runs) {
      Result r = run(s, kind, min_seconds);
      const char* name = kind.c_str();
      if (json) {
        std::printf(
            "%s  {\"dtype\": \"%s\", \"M\": %ld, \"K\": %ld, \"N\": %ld, \"ms_median\": %.4f, "
            "\"gflops_median\": %.2f, \"gflops_best\": %.2f, \"reps\": %d, \"ms_first\": %.2f, "
            "\"gflops_cpu_time\": %.2f}",
            first ? "" : ",\n", name, s.M, s.K, s.N, r.ms_median, r.gflops_median, r.gflops_best, r.reps, r.ms_first,
            r.gflops_cpu);
      } else {
        std::printf("%-12s %6ld %6ld %6ld %10.2f %12.1f %12.1f %5d %10.1f %12.1f\n", name, s.M, s.K, s.N, r.ms_median,
                    r.gflops_median, r.gflops_best, r.reps, r.ms_first, r.gflops_cpu);
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
