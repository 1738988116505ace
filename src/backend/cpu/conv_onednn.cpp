// 2-D convolution through oneDNN's convolution_forward primitive, primitives cached by shape.
// The input is always f32 NCHW; for bf16 compute the source reorder also converts it.
// Two layouts: plain NCHW memory handed to the primitive as is, or oneDNN's preferred blocked
// layout (format_tag::any) with reorders of source, weights and result around the primitive.
#include <dnnl.hpp>
#include <map>
#include <mutex>
#include <optional>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "backend/cpu/kernels.h"
#include "backend/cpu/onednn.h"
#include "core/error.h"

namespace zimage::cpu {
namespace {

using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                       int64_t, int64_t, int64_t, int, bool, bool>;

struct Cached {
  dnnl::convolution_forward prim;
  dnnl::memory::desc src_plain, wei_plain, dst_plain, bias;
  dnnl::memory::desc src, wei, dst;  // what the primitive uses
  std::optional<dnnl::reorder> src_reorder, wei_reorder, dst_reorder;
};

Cached& primitive(const ConvShape& s, DType dt, bool has_bias, bool blocked) {
  static std::mutex mu;
  static std::map<Key, Cached> cache;
  std::lock_guard<std::mutex> lock(mu);
  Key key{s.N, s.C, s.H, s.W, s.O, s.kh, s.kw, s.sh, s.sw, s.pt, s.pb, s.pl, s.pr, int(dt), has_bias, blocked};
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  using dt_t = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  const dt_t in = dt == DType::BF16 ? dt_t::bf16 : dt_t::f32;
  const int64_t OH = s.out_h(), OW = s.out_w();
  Cached c;
  c.src_plain = dnnl::memory::desc({s.N, s.C, s.H, s.W}, dt_t::f32, tag::nchw);  // the caller's f32 input
  c.wei_plain = dnnl::memory::desc({s.O, s.C, s.kh, s.kw}, in, tag::oihw);
  c.dst_plain = dnnl::memory::desc({s.N, s.O, OH, OW}, dt_t::f32, tag::nchw);
  if (has_bias) c.bias = dnnl::memory::desc({s.O}, dt_t::f32, tag::a);
  // bf16 compute: the reorder converts f32 -> bf16 on the way in (one pass over the input).
  dnnl::memory::desc src_any = dnnl::memory::desc({s.N, s.C, s.H, s.W}, in, blocked ? tag::any : tag::nchw);
  dnnl::memory::desc wei_any = blocked ? dnnl::memory::desc({s.O, s.C, s.kh, s.kw}, in, tag::any) : c.wei_plain;
  dnnl::memory::desc dst_any = blocked ? dnnl::memory::desc({s.N, s.O, OH, OW}, dt_t::f32, tag::any) : c.dst_plain;
  const dnnl::memory::dims strides{s.sh, s.sw}, pad_l{s.pt, s.pl}, pad_r{s.pb, s.pr};
  const dnnl::engine& eng = onednn::engine();
  auto desc =
      has_bias
          ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                            src_any, wei_any, c.bias, dst_any, strides, pad_l, pad_r)
          : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                            src_any, wei_any, dst_any, strides, pad_l, pad_r);
  dnnl::convolution_forward::primitive_desc pd(desc, eng);
  c.src = pd.src_desc();
  c.wei = pd.weights_desc();
  c.dst = pd.dst_desc();
  c.prim = dnnl::convolution_forward(pd);
  if (c.src != c.src_plain) c.src_reorder = dnnl::reorder(dnnl::reorder::primitive_desc(eng, c.src_plain, eng, c.src));
  if (c.wei != c.wei_plain) c.wei_reorder = dnnl::reorder(dnnl::reorder::primitive_desc(eng, c.wei_plain, eng, c.wei));
  if (c.dst != c.dst_plain) c.dst_reorder = dnnl::reorder(dnnl::reorder::primitive_desc(eng, c.dst, eng, c.dst_plain));
  return cache.emplace(key, std::move(c)).first->second;
}

}  // namespace

void conv2d(const ConvShape& s, const void* x, const void* w, DType dt, const float* bias, float* y,
            ConvLayout layout) {
  ZI_ASSERT(dt == DType::F32 || dt == DType::BF16, "conv2d: dtype ", dtype_name(dt));
  if (s.N == 0 || s.O == 0 || s.out_h() <= 0 || s.out_w() <= 0) return;
  if (dt == DType::BF16 && !onednn::has_bf16()) {  // x rounded to bf16 values, w widened: an f32 conv
    std::vector<float> xf(size_t(s.N * s.C * s.H * s.W)), wf(size_t(s.O * s.C * s.kh * s.kw));
    const auto* xp = static_cast<const float*>(x);
    const auto* wp = static_cast<const uint16_t*>(w);
    for (size_t i = 0; i < xf.size(); ++i) xf[i] = round_bf16(xp[i]);
    for (size_t i = 0; i < wf.size(); ++i) wf[i] = bf16_to_f32(wp[i]);
    return conv2d(s, xf.data(), wf.data(), DType::F32, bias, y, layout);
  }
  Cached& c = primitive(s, dt, bias != nullptr, layout == ConvLayout::Blocked);
  const dnnl::engine& eng = onednn::engine();
  dnnl::memory src_plain(c.src_plain, eng, const_cast<void*>(x));
  dnnl::memory wei_plain(c.wei_plain, eng, const_cast<void*>(w));
  dnnl::memory dst_plain(c.dst_plain, eng, y);
  dnnl::memory src = src_plain, wei = wei_plain, dst = dst_plain;
  if (c.src_reorder) {
    src = dnnl::memory(c.src, eng);
    onednn::reorder(*c.src_reorder, src_plain, src);
  }
  if (c.wei_reorder) {
    wei = dnnl::memory(c.wei, eng);
    onednn::reorder(*c.wei_reorder, wei_plain, wei);
  }
  if (c.dst_reorder) dst = dnnl::memory(c.dst, eng);
  std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}};
  if (bias) args.emplace(DNNL_ARG_BIAS, dnnl::memory(c.bias, eng, const_cast<float*>(bias)));
  onednn::execute(c.prim, args);
  if (c.dst_reorder) onednn::reorder(*c.dst_reorder, dst, dst_plain);
}

}  // namespace zimage::cpu
