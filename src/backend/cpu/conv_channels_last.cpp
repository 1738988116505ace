// Channels-last convolution and NCHW <-> NHWC reorders through oneDNN (conv_channels_last.h).
#include "backend/cpu/conv_channels_last.h"

#include <dnnl.hpp>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "backend/cpu/cpu_level.h"
#include "backend/cpu/onednn.h"
#include "core/error.h"

namespace zimage::cpu {
namespace {

using dt_t = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

dt_t dnnl_dt(DType dt) {
  if (dt == DType::F32) return dt_t::f32;
  if (dt == DType::BF16) return dt_t::bf16;
  fail("[conv2d] channels-last activations must be float32 or bfloat16, got ", dtype_name(dt));
}

void reorder(const dnnl::memory::desc& from, const void* src, const dnnl::memory::desc& to, void* dst) {
  const dnnl::engine& eng = onednn::engine();
  dnnl::memory a(from, eng, const_cast<void*>(src)), b(to, eng, dst);
  onednn::reorder(dnnl::reorder(a, b), a, b);
}

}  // namespace

void nchw_to_nhwc(const float* x, int64_t B, int64_t C, int64_t H, int64_t W, void* y, DType yt) {
  reorder(dnnl::memory::desc({B, C, H, W}, dt_t::f32, tag::nchw), x,
          dnnl::memory::desc({B, C, H, W}, dnnl_dt(yt), tag::nhwc), y);
}

void nhwc_to_nchw(const void* x, DType xt, int64_t B, int64_t C, int64_t H, int64_t W, float* y) {
  reorder(dnnl::memory::desc({B, C, H, W}, dnnl_dt(xt), tag::nhwc), x,
          dnnl::memory::desc({B, C, H, W}, dt_t::f32, tag::nchw), y);
}

struct ConvNhwc::Impl {
  Tensor w, bias;  // [O, C, kh, kw] compute dtype, [O] f32
  DType dt = DType::F32;
  bool widen = false;  // bf16 compute without oneDNN bf16 (onednn::has_bf16): w holds f32 values
  int64_t O = 0, C = 0, kh = 0, kw = 0, stride = 1, pt = 0, pb = 0, pl = 0, pr = 0;

  struct Prim {
    dnnl::convolution_forward prim;
    dnnl::memory::desc src, dst, bias;
    dnnl::memory wei;             // weights in the primitive's layout
    dnnl::memory::desc dst_nchw;  // Nchw mode: the f32 NCHW result
    bool dst_reorder = false;
    bool sum_separate = false;  // Accumulate mode: prim has no sum post-op, run() adds
  };
  std::mutex mu;
  std::map<std::tuple<int64_t, int64_t, int64_t, int>, Prim> prims;  // (N, H, W, mode)
  std::vector<dnnl::memory> weights;  // reordered weights, shared by primitives wanting the same layout

  const Prim& get(int64_t N, int64_t H, int64_t W, Mode mode) {
    std::lock_guard<std::mutex> lock(mu);
    const auto key = std::make_tuple(N, H, W, int(mode));
    auto it = prims.find(key);
    if (it != prims.end()) return it->second;
    const dnnl::engine& eng = onednn::engine();
    const dt_t d = dnnl_dt(dt);
    const int64_t OH = (H + pt + pb - kh) / stride + 1, OW = (W + pl + pr - kw) / stride + 1;
    const bool nchw = mode == Mode::Nchw;
    Prim p;
    p.src = dnnl::memory::desc({N, C, H, W}, d, tag::nhwc);
    p.dst = dnnl::memory::desc({N, O, OH, OW}, nchw ? dt_t::f32 : d, nchw ? tag::any : tag::nhwc);
    p.bias = dnnl::memory::desc({O}, dt_t::f32, tag::a);
    const dnnl::memory::desc wei_any({O, C, kh, kw}, d, tag::any);
    dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, p.src,
                                         wei_any, p.bias, p.dst, {stride, stride}, {pt, pl}, {pb, pr});
    dnnl::primitive_attr attr;
    if (mode == Mode::Accumulate) {
      dnnl::post_ops po;
      po.append_sum(1.f);
      attr.set_post_ops(po);
    }
    dnnl::convolution_forward::primitive_desc pd(desc, attr, eng);
    if (mode == Mode::Accumulate && std::string(pd.impl_info_str()).rfind("brg", 0) != 0) {
      // y += conv(x) must be y + (sum of products + bias), the residual add of torch's order. The
      // brgemm convolutions (avx512_core and up) add the destination after the accumulation; the
      // older jit kernels (jit:avx2, as oneDNN 2.6 runs at the avx2 level) start the accumulator
      // from the destination instead, so the products are summed onto the large residual: measured
      // on the tiny decoder, 2.7e-7 rel L2 per resnet against y + conv(x), 1.2e-6 over the decoder.
      // Those get the plain primitive and a separate add (run()). Portable never gets here (run()).
      p.sum_separate = true;
      pd = dnnl::convolution_forward::primitive_desc(desc, eng);
    }
    p.prim = dnnl::convolution_forward(pd);
    if (nchw) {
      p.dst = pd.dst_desc();
      p.dst_nchw = dnnl::memory::desc({N, O, OH, OW}, dt_t::f32, tag::nchw);
      p.dst_reorder = p.dst != p.dst_nchw;
    }
    const dnnl::memory::desc wdesc = pd.weights_desc();
    for (auto& m : weights)
      if (m.get_desc() == wdesc) p.wei = m;
    if (!p.wei) {
      p.wei = dnnl::memory(wdesc, eng);
      reorder(dnnl::memory::desc({O, C, kh, kw}, d, tag::oihw), w.raw(), wdesc, p.wei.get_data_handle());
      weights.push_back(p.wei);
    }
    return prims.emplace(key, std::move(p)).first->second;
  }

  void run(const Prim& p, const void* x, void* y) const {
    const dnnl::engine& eng = onednn::engine();
    onednn::execute(p.prim, {{DNNL_ARG_SRC, dnnl::memory(p.src, eng, const_cast<void*>(x))},
                             {DNNL_ARG_WEIGHTS, p.wei},
                             {DNNL_ARG_BIAS, dnnl::memory(p.bias, eng, const_cast<void*>(bias.raw()))},
                             {DNNL_ARG_DST, dnnl::memory(p.dst, eng, y)}});
  }
};

ConvNhwc::ConvNhwc(const Tensor& w, const Tensor& bias, int64_t stride, int64_t pt, int64_t pb, int64_t pl, int64_t pr)
    : impl_(std::make_unique<Impl>()) {
  ZI_ASSERT(w.ndim() == 4 && bias.dtype() == DType::F32 && bias.numel() == w.dim(0), "conv weights");
  Impl& m = *impl_;
  m.widen = w.dtype() == DType::BF16 && !onednn::has_bf16();
  m.w = m.widen ? w.to(DType::F32) : w;
  m.bias = bias;
  m.dt = m.w.dtype();
  m.O = w.dim(0);
  m.C = w.dim(1);
  m.kh = w.dim(2);
  m.kw = w.dim(3);
  m.stride = stride;
  m.pt = pt;
  m.pb = pb;
  m.pl = pl;
  m.pr = pr;
}

ConvNhwc::~ConvNhwc() = default;

void ConvNhwc::run(const void* x, int64_t N, int64_t H, int64_t W, void* y, Mode mode) {
  Impl& m = *impl_;
  if (m.widen) {  // bf16 activations widened to f32, an f32 conv to NHWC, then rounded to bf16 once
    std::vector<float> xf(size_t(N * H * W * m.C));
    const auto* xb = static_cast<const uint16_t*>(x);
    for (size_t i = 0; i < xf.size(); ++i) xf[i] = bf16_to_f32(xb[i]);
    const int64_t OH = (H + m.pt + m.pb - m.kh) / m.stride + 1, OW = (W + m.pl + m.pr - m.kw) / m.stride + 1;
    std::vector<float> yf(size_t(N * OH * OW * m.O));
    m.run(m.get(N, H, W, Mode::ChannelsLast), xf.data(), yf.data());
    if (mode == Mode::Nchw) return nhwc_to_nchw(yf.data(), DType::F32, N, m.O, OH, OW, static_cast<float*>(y));
    auto* yb = static_cast<uint16_t*>(y);
    for (size_t i = 0; i < yf.size(); ++i) yb[i] = f32_to_bf16(yf[i]);
    return;
  }
  // oneDNN 2.6's jit:sse41 convolution with a sum post-op crashes (SIGSEGV, e.g. N 2, 16 -> 16
  // channels, 12x16): at the portable level (oneDNN capped at sse41) the sum is a separate pass,
  // as it is where the kernel would sum in another order (Impl::get, sum_separate).
  if (mode == Mode::Accumulate && (active_level() == Level::Portable || m.get(N, H, W, mode).sum_separate)) {
    const int64_t OH = (H + m.pt + m.pb - m.kh) / m.stride + 1, OW = (W + m.pl + m.pr - m.kw) / m.stride + 1;
    std::vector<float> t(size_t(N * OH * OW * m.O));
    m.run(m.get(N, H, W, Mode::ChannelsLast), x, t.data());
    float* yf = static_cast<float*>(y);
    for (size_t i = 0; i < t.size(); ++i) yf[i] += t[i];
    return;
  }
  const Impl::Prim& p = m.get(N, H, W, mode);
  if (mode != Mode::Nchw || !p.dst_reorder) {
    m.run(p, x, y);
    return;
  }
  dnnl::memory tmp(p.dst, onednn::engine());
  m.run(p, x, tmp.get_data_handle());
  reorder(p.dst, tmp.get_data_handle(), p.dst_nchw, y);
}

}  // namespace zimage::cpu
