// Benchmark of the CUDA backend at Z-Image-Turbo's 1024x1024 sizes (dim 3840, 30 heads of 128,
// FFN 10240, 4096 image tokens + text tokens). Times with CUDA events (median of repeats after
// warm-up) on fresh random data, and prints one table; with an argument also writes it as TSV.
//   zimage_cuda_bench [out.tsv] [--quick]
// Numbers to read: GEMM TFLOP/s against the 8192^3 ceiling; attention TFLOP/s (4 S^2 D H flops);
// the full block's milliseconds, and the estimate of 8 steps x (30 layers + refiners).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "backend/cuda/allocator.h"
#include "backend/cuda/attention_internal.h"
#include "backend/cuda/backend.h"
#include "backend/cuda/context.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/ops.h"
#include "core/safetensors.h"
#include "transformer/transformer_block.h"

using namespace zimage;
using namespace zimage::cuda;

namespace {

struct Row {
  std::string what;
  double ms, tflops;
};
std::vector<Row> g_rows;

DeviceTensor rand_dev(Shape s, DType dt, uint64_t seed, float scale = 1.f) {
  // Cheap deterministic pseudo-random values (not zeros: zeros time faster than real data).
  std::vector<float> v(size_t(shape_numel(s)));
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& f : v) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    f = scale * (float(x >> 40) / float(1 << 24) * 2.f - 1.f);
  }
  return DeviceTensor::upload(Tensor::from_f32(std::move(s), v), dt);
}

Tensor rand_host(Shape s, uint64_t seed, float scale, DType dt) {
  std::vector<float> v(size_t(shape_numel(s)));
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& f : v) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    f = scale * (float(x >> 40) / float(1 << 24) * 2.f - 1.f);
  }
  return Tensor::from_f32(std::move(s), v).to(dt);
}

// The transformer's own ZImageTransformerBlock at full size with random bf16 weights (scaled
// like a trained layer, 1/sqrt(fan_in)), written to a temporary safetensors file and uploaded by
// the loader: the model code the pipeline runs, on CUDA tensors through the op table.
transformer::ZImageTransformerBlock random_block(const ZImageTransformerConfig& cfg, const std::string& path) {
  const int64_t D = cfg.dim, F = cfg.ffn_hidden_dim(), A = cfg.adaln_dim(), hd = cfg.head_dim();
  std::map<std::string, Tensor> w;
  auto lin = [&](const std::string& n, int64_t out, int64_t in, uint64_t seed) {
    w[n] = rand_host({out, in}, seed, 1.f / std::sqrt(float(in)), DType::BF16);
  };
  lin("b.attention.to_q.weight", D, D, 11);
  lin("b.attention.to_k.weight", D, D, 12);
  lin("b.attention.to_v.weight", D, D, 13);
  lin("b.attention.to_out.0.weight", D, D, 14);
  lin("b.feed_forward.w1.weight", F, D, 15);
  lin("b.feed_forward.w3.weight", F, D, 16);
  lin("b.feed_forward.w2.weight", D, F, 17);
  lin("b.adaLN_modulation.0.weight", 4 * D, A, 18);
  w["b.adaLN_modulation.0.bias"] = rand_host({4 * D}, 19, 0.1f, DType::BF16);
  for (const char* n : {"b.attention.norm_q.weight", "b.attention.norm_k.weight"})
    w[n] = rand_host({hd}, 20, 0.1f, DType::BF16);
  for (const char* n :
       {"b.attention_norm1.weight", "b.attention_norm2.weight", "b.ffn_norm1.weight", "b.ffn_norm2.weight"})
    w[n] = rand_host({D}, 21, 0.1f, DType::BF16);
  save_safetensors(path, w);
  const WeightStore store = WeightStore::open_file(path);
  transformer::WeightLoader loader(store, DType::BF16, "transformer");
  loader.set_device(Device::CUDA);
  return transformer::ZImageTransformerBlock(loader, "b.", cfg, /*modulation=*/true);
}

// Median milliseconds of fn over `reps` timed runs after `warm` untimed ones.
double time_ms(const std::function<void()>& fn, int warm, int reps) {
  auto& c = ctx();
  for (int i = 0; i < warm; ++i) fn();
  cudaEvent_t a, b;
  ZI_CUDA_CHECK(cudaEventCreate(&a));
  ZI_CUDA_CHECK(cudaEventCreate(&b));
  std::vector<float> t;
  for (int i = 0; i < reps; ++i) {
    ZI_CUDA_CHECK(cudaEventRecord(a, c.stream));
    fn();
    ZI_CUDA_CHECK(cudaEventRecord(b, c.stream));
    ZI_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    ZI_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void report(const std::string& what, double ms, double flops) {
  const double tf = flops > 0 ? flops / (ms * 1e-3) / 1e12 : 0;
  g_rows.push_back({what, ms, tf});
  std::printf("%-58s %10.3f ms %9.1f TFLOP/s\n", what.c_str(), ms, tf);
  std::fflush(stdout);
}

void bench_gemm(int64_t M, int64_t N, int64_t K, DType out, const char* name) {
  const DeviceTensor x = rand_dev({M, K}, DType::BF16, 1), w = rand_dev({N, K}, DType::BF16, 2, 0.05f);
  const double ms = time_ms([&] { linear(x, w, nullptr, out); }, 3, 10);
  report(
      std::string("gemm ") + name + " M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K),
      ms, 2.0 * double(M) * double(N) * double(K));
}

void bench_attention(int64_t S, int64_t H, AttentionBackend be, const char* name, int reps) {
  const int64_t D = 128;
  const DeviceTensor q = rand_dev({1, S, H, D}, DType::BF16, 3), k = rand_dev({1, S, H, D}, DType::BF16, 4);
  const DeviceTensor v = rand_dev({1, S, H, D}, DType::BF16, 5);
  const float scale = 1.f / std::sqrt(float(D));
  const double ms = time_ms([&] { attention(q, k, v, scale, false, {}, be); }, 2, reps);
  report(std::string("attention ") + name + " S=" + std::to_string(S) + " H=" + std::to_string(H) + " D=128", ms,
         4.0 * double(S) * double(S) * double(D) * double(H));
}

}  // namespace

int main(int argc, char** argv) {
  std::string tsv;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0)
      quick = true;
    else
      tsv = argv[i];
  }
  try {
    auto& c = ctx();
    std::printf("device: %s, %d SMs, cc %d.%d\n", c.name.c_str(), c.sm_count, c.cc_major, c.cc_minor);
    const int64_t dim = 3840, heads = 30, hidden = 10240, img = 4096, txt = 256, T = img + txt;

    bench_gemm(8192, 8192, 8192, DType::BF16, "ceiling");
    bench_gemm(T, dim, dim, DType::BF16, "qkv/out proj");
    bench_gemm(T, hidden, dim, DType::BF16, "ffn w1/w3");
    bench_gemm(T, dim, hidden, DType::BF16, "ffn w2");
    bench_gemm(1, dim, 256, DType::BF16, "adaLN chunk");

    bench_attention(T, heads, AttentionBackend::Flash, "flash", 10);
    set_flash_use_ldmatrix(false);
    bench_attention(T, heads, AttentionBackend::Flash, "flash (plain loads)", 5);
    set_flash_use_ldmatrix(true);
    bench_attention(1024, 4, AttentionBackend::Native, "native", 3);

    register_backend();
    ZImageTransformerConfig cfg;  // Z-Image-Turbo: dim 3840, 30 heads, FFN 10240
    const std::string wpath = "/tmp/zimage_cuda_bench_block.safetensors";
    const transformer::ZImageTransformerBlock block = random_block(cfg, wpath);
    std::remove(wpath.c_str());
    const Tensor x = rand_host({T, dim}, 8, 1.f, DType::BF16).to(DType::F32).to(Device::CUDA);
    const Tensor adaln = rand_host({1, 256}, 9, 1.f, DType::BF16).to(DType::F32).to(Device::CUDA);
    const Tensor rope = rand_host({T, 64, 2}, 10, 1.f, DType::F32).to(Device::CUDA);
    transformer::BlockBuffers buf;
    const double block_flops =
        2.0 * double(T) * (4.0 * dim * dim + 3.0 * dim * hidden) + 4.0 * double(T) * T * 128 * heads;
    const double block_ms = time_ms(
        [&] { block.forward(ops::Precision::torch_bf16(), x.clone(), {T}, rope, adaln, buf); }, 2, quick ? 3 : 10);
    report("DiT block (bf16) T=" + std::to_string(T), block_ms, block_flops);
    // 30 main layers over T tokens; 2 noise-refiner layers over the image tokens and 2 context-
    // refiner layers over the text tokens cost about 2 + 2 * txt/T block-equivalents.
    const double per_step = block_ms * (30.0 + 2.0 * double(img) / double(T) + 2.0 * double(txt) / double(T));
    std::printf("estimate: %.1f ms per transformer step, %.0f ms for 8 steps (transformer only)\n", per_step,
                8 * per_step);
    g_rows.push_back({"estimate 8 steps transformer", 8 * per_step, 0});

    const AllocatorStats s = CachingAllocator::instance().stats();
    std::printf("allocator: peak %.1f MiB in use, %llu allocations, %llu cache hits, %llu cudaMalloc\n",
                double(s.peak_bytes_in_use) / (1 << 20), (unsigned long long)s.allocations,
                (unsigned long long)s.cache_hits, (unsigned long long)s.device_mallocs);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  if (!tsv.empty()) {
    FILE* f = std::fopen(tsv.c_str(), "w");
    if (f) {
      std::fprintf(f, "what\tms\ttflops\n");
      for (const auto& r : g_rows) std::fprintf(f, "%s\t%.4f\t%.2f\n", r.what.c_str(), r.ms, r.tflops);
      std::fclose(f);
    }
  }
  return 0;
}
