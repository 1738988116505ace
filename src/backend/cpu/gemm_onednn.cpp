// GEMM through oneDNN's matmul primitive (AMX / AVX-512 BF16 / FP32 kernels), primitives cached by
// shape and dtypes, or the level's own f32 GEMM where the table has one (Kernels::gemm_f32: oneDNN's
// row results depend on M there). Weights are read in place ([N, K] row-major, as stored / memory-mapped).
#include <dnnl.hpp>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "backend/cpu/cpu_level.h"
#include "backend/cpu/gemm.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/onednn.h"
#include "core/error.h"

namespace zimage::cpu {
namespace {

// M, N, K, input dtype, bias, output dtype, ldx, ldy
using Key = std::tuple<int64_t, int64_t, int64_t, int, bool, int, int64_t, int64_t>;
struct Cached {
  dnnl::matmul prim;
  dnnl::memory::desc src, wei, bias, dst;
};

dnnl::memory::data_type dnnl_dt(DType t) {
  return t == DType::BF16 ? dnnl::memory::data_type::bf16 : dnnl::memory::data_type::f32;
}

Cached& primitive(int64_t M, int64_t N, int64_t K, DType dt, bool has_bias, DType yt, int64_t ldx, int64_t ldy) {
  static std::mutex mu;
  static std::map<Key, Cached> cache;
  std::lock_guard<std::mutex> lock(mu);
  Key key{M, N, K, int(dt), has_bias, int(yt), ldx, ldy};
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  using tag = dnnl::memory::format_tag;
  Cached c;
  c.src = dnnl::memory::desc({M, K}, dnnl_dt(dt), {ldx, 1});
  c.wei = dnnl::memory::desc({K, N}, dnnl_dt(dt), tag::ba);  // stored as [N, K]
  c.dst = dnnl::memory::desc({M, N}, dnnl_dt(yt), {ldy, 1});
  if (has_bias) c.bias = dnnl::memory::desc({1, N}, dnnl::memory::data_type::f32, tag::ab);
  const dnnl::engine& eng = onednn::engine();
  dnnl::matmul::primitive_desc pd =
      has_bias ? dnnl::matmul::primitive_desc(dnnl::matmul::desc(c.src, c.wei, c.bias, c.dst), eng)
               : dnnl::matmul::primitive_desc(dnnl::matmul::desc(c.src, c.wei, c.dst), eng);
  c.prim = dnnl::matmul(pd);
  return cache.emplace(key, std::move(c)).first->second;
}

}  // namespace

void gemm_nt_ex(int64_t M, int64_t N, int64_t K, const void* x, int64_t ldx, const void* w, DType dt, const float* bias,
                void* y, int64_t ldy, DType yt) {
  ZI_ASSERT(dt == DType::F32 || dt == DType::BF16, "gemm_nt: dtype ", dtype_name(dt));
  ZI_ASSERT(yt == DType::F32 || (yt == DType::BF16 && dt == DType::BF16), "gemm_nt: output dtype ", dtype_name(yt));
  if (M == 0 || N == 0) return;
  if (dt == DType::F32 && yt == DType::F32 && kernels().gemm_f32)  // this level's own f32 GEMM (cpu_level.h)
    return kernels().gemm_f32(M, N, K, static_cast<const float*>(x), ldx, static_cast<const float*>(w), bias,
                              static_cast<float*>(y), ldy);
  if (dt == DType::BF16 && gemm_amx_bf16(M, N, K, x, ldx, w, bias, y, ldy, yt)) return;
  if (dt == DType::BF16 && !onednn::has_bf16()) {
    // The bf16 operands widen to f32 exactly and their products are exact in f32, so an f32 GEMM
    // computes the same thing (f32 accumulation).
    std::vector<float> xf(size_t(M * K)), wf(size_t(N * K));
    const auto* xb = static_cast<const uint16_t*>(x);
    const auto* wb = static_cast<const uint16_t*>(w);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t k = 0; k < K; ++k) xf[size_t(m * K + k)] = bf16_to_f32(xb[m * ldx + k]);
    for (size_t i = 0; i < wf.size(); ++i) wf[i] = bf16_to_f32(wb[i]);
    if (yt == DType::F32) return gemm_nt_ex(M, N, K, xf.data(), K, wf.data(), DType::F32, bias, y, ldy, DType::F32);
    std::vector<float> yf(size_t(M * N));
    gemm_nt_ex(M, N, K, xf.data(), K, wf.data(), DType::F32, bias, yf.data(), N, DType::F32);
    auto* yb = static_cast<uint16_t*>(y);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) yb[m * ldy + n] = f32_to_bf16(yf[size_t(m * N + n)]);
    return;
  }
  Cached& c = primitive(M, N, K, dt, bias != nullptr, yt, ldx, ldy);
  const dnnl::engine& eng = onednn::engine();
  dnnl::memory src(c.src, eng, const_cast<void*>(x));
  dnnl::memory wei(c.wei, eng, const_cast<void*>(w));
  dnnl::memory dst(c.dst, eng, y);
  std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}};
  if (bias) args.emplace(DNNL_ARG_BIAS, dnnl::memory(c.bias, eng, const_cast<float*>(bias)));
  onednn::execute(c.prim, args);
}

void gemm_nt(int64_t M, int64_t N, int64_t K, const void* x, const void* w, DType dt, const float* bias, float* y) {
  gemm_nt_ex(M, N, K, x, K, w, dt, bias, y, N, DType::F32);
}

}  // namespace zimage::cpu
