// ChannelsLastConv2d and the NCHW <-> NHWC conversions (ops/channels_last.h) through oneDNN.
// Each convolution keeps, per input shape and output mode, its convolution_forward primitive and
// its weights reordered once into the layout that primitive wants.
#include <dnnl.hpp>
#include <map>
#include <mutex>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "backend/cpu/onednn.h"
#include "ops/channels_last.h"

namespace zimage::ops {
namespace {

using dt_t = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

dt_t dnnl_dt(DType dt) {
  if (dt == DType::F32) return dt_t::f32;
  if (dt == DType::BF16) return dt_t::bf16;
  fail("[conv2d] channels-last activations must be float32 or bfloat16, got ", dtype_name(dt));
}

void reorder(const dnnl::memory::desc& from, const void* src, const dnnl::memory::desc& to, void* dst) {
  const dnnl::engine& eng = cpu::onednn::engine();
  dnnl::memory a(from, eng, const_cast<void*>(src)), b(to, eng, dst);
  cpu::onednn::reorder(dnnl::reorder(a, b), a, b);
}

}  // namespace

Tensor to_channels_last(const Tensor& x, DType dt) {
  if (x.ndim() != 4 || x.dtype() != DType::F32)
    fail("[conv2d] to_channels_last: input must be float32 [B, C, H, W], got ", dtype_name(x.dtype()), " ",
         shape_str(x.shape()));
  const int64_t B = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  Tensor y = Tensor::empty(dt, {B, H, W, C});  // [B, H, W, C]
  if (y.numel() == 0) return y;
  reorder(dnnl::memory::desc({B, C, H, W}, dt_t::f32, tag::nchw), x.raw(),
          dnnl::memory::desc({B, C, H, W}, dnnl_dt(dt), tag::nhwc), y.raw());
  return y;
}

Tensor from_channels_last(const Tensor& x) {
  if (x.ndim() != 4) fail("[conv2d] from_channels_last: input must be [B, H, W, C], got ", shape_str(x.shape()));
  const int64_t B = x.dim(0), H = x.dim(1), W = x.dim(2), C = x.dim(3);
  Tensor y = Tensor::empty(DType::F32, {B, C, H, W});  // [B, C, H, W]
  if (y.numel() == 0) return y;
  reorder(dnnl::memory::desc({B, C, H, W}, dnnl_dt(x.dtype()), tag::nhwc), x.raw(),
          dnnl::memory::desc({B, C, H, W}, dt_t::f32, tag::nchw), y.raw());
  return y;
}

// ---- ChannelsLastConv2d ----

struct ChannelsLastConv2d::Impl {
  Tensor w, bias;  // [O, C, kh, kw] compute dtype, [O] f32
  DType dt = DType::F32;
  int64_t O = 0, C = 0, kh = 0, kw = 0, stride = 1;
  Padding2d pad;

  enum Mode { ChannelsLast = 0, Accumulate = 1, Nchw = 2 };
  struct Prim {
    dnnl::convolution_forward prim;
    dnnl::memory::desc src, dst, bias;
    dnnl::memory wei;              // weights in the primitive's layout
    dnnl::memory::desc dst_nchw;   // Nchw mode: the f32 NCHW result
    bool dst_reorder = false;
  };
  std::mutex mu;
  std::map<std::tuple<int64_t, int64_t, int64_t, int>, Prim> prims;  // (N, H, W, mode)
  std::vector<dnnl::memory> weights;  // reordered weights, shared by primitives wanting the same layout

  int64_t out_h(int64_t H) const { return (H + pad.top + pad.bottom - kh) / stride + 1; }
  int64_t out_w(int64_t W) const { return (W + pad.left + pad.right - kw) / stride + 1; }

  const Prim& get(int64_t N, int64_t H, int64_t W, Mode mode) {
    std::lock_guard<std::mutex> lock(mu);
    const auto key = std::make_tuple(N, H, W, int(mode));
    auto it = prims.find(key);
    if (it != prims.end()) return it->second;
    const dnnl::engine& eng = cpu::onednn::engine();
    const dt_t d = dnnl_dt(dt);
    const int64_t OH = out_h(H), OW = out_w(W);
    Prim p;
    p.src = dnnl::memory::desc({N, C, H, W}, d, tag::nhwc);
    p.dst = dnnl::memory::desc({N, O, OH, OW}, mode == Nchw ? dt_t::f32 : d, mode == Nchw ? tag::any : tag::nhwc);
    p.bias = dnnl::memory::desc({O}, dt_t::f32, tag::a);
    const dnnl::memory::desc wei_any({O, C, kh, kw}, d, tag::any);
    dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                         p.src, wei_any, p.bias, p.dst, {stride, stride}, {pad.top, pad.left},
                                         {pad.bottom, pad.right});
    dnnl::primitive_attr attr;
    if (mode == Accumulate) {
      dnnl::post_ops po;
      po.append_sum(1.f);
      attr.set_post_ops(po);
    }
    dnnl::convolution_forward::primitive_desc pd(desc, attr, eng);
    p.prim = dnnl::convolution_forward(pd);
    if (mode == Nchw) {
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

  void run(const Prim& p, const Tensor& x, void* y) const {
    const dnnl::engine& eng = cpu::onednn::engine();
    cpu::onednn::execute(p.prim, {{DNNL_ARG_SRC, dnnl::memory(p.src, eng, const_cast<void*>(x.raw()))},
                                  {DNNL_ARG_WEIGHTS, p.wei},
                                  {DNNL_ARG_BIAS, dnnl::memory(p.bias, eng, const_cast<void*>(bias.raw()))},
                                  {DNNL_ARG_DST, dnnl::memory(p.dst, eng, y)}});
  }

  void check_input(const Tensor& x) const {
    if (x.ndim() != 4) fail("[conv2d] input must be channels-last [B, H, W, C], got ", shape_str(x.shape()));
    if (x.dtype() != dt)
      fail("[conv2d] input is ", dtype_name(x.dtype()), " but the convolution computes in ", dtype_name(dt));
    if (x.dim(3) != C)
      fail("[conv2d] input has ", x.dim(3), " channels but weight ", shape_str(w.shape()), " expects ", C);
    if (x.dim(1) + pad.top + pad.bottom < kh || x.dim(2) + pad.left + pad.right < kw)
      fail("[conv2d] input ", shape_str(x.shape()), " (padded) is smaller than the kernel ", kh, "x", kw);
  }
};

void ChannelsLastConv2d::init(const Tensor& w, const Tensor& bias, int64_t stride, Padding2d pad) {
  if (w.ndim() != 4) fail("[conv2d] weight must be [O, C, kh, kw] but has shape ", shape_str(w.shape()));
  if (w.dtype() != DType::F32 && w.dtype() != DType::BF16)
    fail("[conv2d] weight must be float32 or bfloat16, got ", dtype_name(w.dtype()));
  if (bias.numel() != w.dim(0)) fail("[conv2d] bias has ", bias.numel(), " elements, expected ", w.dim(0));
  if (stride < 1) fail("[conv2d] stride must be >= 1, got ", stride);
  if (pad.top < 0 || pad.bottom < 0 || pad.left < 0 || pad.right < 0)
    fail("[conv2d] negative padding (", pad.top, ", ", pad.bottom, ", ", pad.left, ", ", pad.right, ")");
  impl_ = std::make_shared<Impl>();
  impl_->w = w;
  impl_->bias = bias.to(DType::F32);
  impl_->dt = w.dtype();
  impl_->O = w.dim(0);
  impl_->C = w.dim(1);
  impl_->kh = w.dim(2);
  impl_->kw = w.dim(3);
  impl_->stride = stride;
  impl_->pad = pad;
}

Tensor ChannelsLastConv2d::forward(const Tensor& x) const {
  ZI_ASSERT(impl_, "ChannelsLastConv2d used before init");
  Impl& m = *impl_;
  m.check_input(x);
  const int64_t N = x.dim(0), H = x.dim(1), W = x.dim(2);
  Tensor y = Tensor::empty(m.dt, {N, m.out_h(H), m.out_w(W), m.O});  // [B, OH, OW, O]
  if (y.numel() == 0) return y;
  m.run(m.get(N, H, W, Impl::ChannelsLast), x, y.raw());
  return y;
}

void ChannelsLastConv2d::forward_into(const Tensor& x, Tensor& y) const {
  ZI_ASSERT(impl_, "ChannelsLastConv2d used before init");
  Impl& m = *impl_;
  m.check_input(x);
  const int64_t N = x.dim(0), H = x.dim(1), W = x.dim(2);
  const Shape want{N, m.out_h(H), m.out_w(W), m.O};
  if (y.dtype() != m.dt || y.shape() != want)
    fail("[conv2d] output must be ", dtype_name(m.dt), " ", shape_str(want), ", got ", dtype_name(y.dtype()), " ",
         shape_str(y.shape()));
  if (y.numel() == 0) return;
  m.run(m.get(N, H, W, Impl::ChannelsLast), x, y.raw());
}

void ChannelsLastConv2d::forward_accumulate(const Tensor& x, Tensor& y) const {
  ZI_ASSERT(impl_, "ChannelsLastConv2d used before init");
  Impl& m = *impl_;
  m.check_input(x);
  const int64_t N = x.dim(0), H = x.dim(1), W = x.dim(2);
  const Shape want{N, m.out_h(H), m.out_w(W), m.O};
  if (m.dt != DType::F32 || y.dtype() != DType::F32 || y.shape() != want)
    fail("[conv2d] accumulate target must be float32 ", shape_str(want), " with float32 compute, got ",
         dtype_name(y.dtype()), " ", shape_str(y.shape()));
  if (y.numel() == 0) return;
  m.run(m.get(N, H, W, Impl::Accumulate), x, y.raw());
}

Tensor ChannelsLastConv2d::forward_nchw(const Tensor& x) const {
  ZI_ASSERT(impl_, "ChannelsLastConv2d used before init");
  Impl& m = *impl_;
  m.check_input(x);
  const int64_t N = x.dim(0), H = x.dim(1), W = x.dim(2);
  Tensor y = Tensor::empty(DType::F32, {N, m.O, m.out_h(H), m.out_w(W)});  // [B, O, OH, OW]
  if (y.numel() == 0) return y;
  const Impl::Prim& p = m.get(N, H, W, Impl::Nchw);
  if (!p.dst_reorder) {
    m.run(p, x, y.raw());
  } else {
    dnnl::memory tmp(p.dst, cpu::onednn::engine());
    m.run(p, x, tmp.get_data_handle());
    reorder(p.dst, tmp.get_data_handle(), p.dst_nchw, y.raw());
  }
  if (m.dt == DType::BF16) round_to_bf16_(y);  // what a bf16 convolution stores
  return y;
}

}  // namespace zimage::ops
