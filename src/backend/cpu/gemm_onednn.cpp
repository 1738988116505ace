// GEMM through oneDNN's matmul primitive (AVX-512 BF16 / FP32 kernels), primitives cached by shape.
#include <dnnl.hpp>
#include <map>
#include <mutex>
#include <tuple>

#include "backend/cpu/kernels.h"
#include "core/error.h"

namespace zimage::cpu {
namespace {

struct Engine {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream strm{eng};
};
Engine& engine() {
  static Engine e;
  return e;
}

using Key = std::tuple<int64_t, int64_t, int64_t, int, bool>;
struct Cached {
  dnnl::matmul prim;
  dnnl::memory::desc src, wei, bias, dst;
};

Cached& primitive(int64_t M, int64_t N, int64_t K, DType dt, bool has_bias) {
  static std::mutex mu;
  static std::map<Key, Cached> cache;
  std::lock_guard<std::mutex> lock(mu);
  Key key{M, N, K, int(dt), has_bias};
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  using dt_t = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  dt_t in = dt == DType::BF16 ? dt_t::bf16 : dt_t::f32;
  Cached c;
  c.src = dnnl::memory::desc({M, K}, in, tag::ab);
  c.wei = dnnl::memory::desc({K, N}, in, tag::ba);  // stored as [N, K]
  c.dst = dnnl::memory::desc({M, N}, dt_t::f32, tag::ab);
  if (has_bias) c.bias = dnnl::memory::desc({1, N}, dt_t::f32, tag::ab);
  auto& e = engine();
  dnnl::matmul::primitive_desc pd =
      has_bias ? dnnl::matmul::primitive_desc(dnnl::matmul::desc(c.src, c.wei, c.bias, c.dst), e.eng)
               : dnnl::matmul::primitive_desc(dnnl::matmul::desc(c.src, c.wei, c.dst), e.eng);
  c.prim = dnnl::matmul(pd);
  return cache.emplace(key, std::move(c)).first->second;
}

}  // namespace

void gemm_nt(int64_t M, int64_t N, int64_t K, const void* x, const void* w, DType dt,
             const float* bias, float* y) {
  ZI_ASSERT(dt == DType::F32 || dt == DType::BF16, "gemm_nt: dtype ", dtype_name(dt));
  if (M == 0 || N == 0) return;
  Cached& c = primitive(M, N, K, dt, bias != nullptr);
  auto& e = engine();
  dnnl::memory src(c.src, e.eng, const_cast<void*>(x));
  dnnl::memory wei(c.wei, e.eng, const_cast<void*>(w));
  dnnl::memory dst(c.dst, e.eng, y);
  std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}};
  if (bias) args.emplace(DNNL_ARG_BIAS, dnnl::memory(c.bias, e.eng, const_cast<float*>(bias)));
  c.prim.execute(e.strm, args);
  e.strm.wait();
}

}  // namespace zimage::cpu
