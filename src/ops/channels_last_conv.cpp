// ChannelsLastConv2d and the NCHW <-> NHWC conversions (ops/channels_last.h): argument checks
// here, the oneDNN work in the CPU backend (backend/cpu/conv_channels_last.h).
#include "backend/cpu/conv_channels_last.h"
#include "ops/channels_last.h"

namespace zimage::ops {

Tensor to_channels_last(const Tensor& x, DType dt) {
  if (x.ndim() != 4 || x.dtype() != DType::F32)
    fail("[conv2d] to_channels_last: input must be float32 [B, C, H, W], got ", dtype_name(x.dtype()), " ",
         shape_str(x.shape()));
  if (dt != DType::F32 && dt != DType::BF16)
    fail("[conv2d] channels-last activations must be float32 or bfloat16, got ", dtype_name(dt));
  const int64_t B = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  Tensor y = Tensor::empty(dt, {B, H, W, C});  // [B, H, W, C]
  if (y.numel() == 0) return y;
  cpu::nchw_to_nhwc(x.f32(), B, C, H, W, y.raw(), dt);
  return y;
}

Tensor from_channels_last(const Tensor& x) {
  if (x.ndim() != 4) fail("[conv2d] from_channels_last: input must be [B, H, W, C], got ", shape_str(x.shape()));
  if (x.dtype() != DType::F32 && x.dtype() != DType::BF16)
    fail("[conv2d] channels-last activations must be float32 or bfloat16, got ", dtype_name(x.dtype()));
  const int64_t B = x.dim(0), H = x.dim(1), W = x.dim(2), C = x.dim(3);
  Tensor y = Tensor::empty(DType::F32, {B, C, H, W});  // [B, C, H, W]
  if (y.numel() == 0) return y;
  cpu::nhwc_to_nchw(x.raw(), x.dtype(), B, C, H, W, y.f32());
  return y;
}

struct ChannelsLastConv2d::Impl {
  Tensor w;  // [O, C, kh, kw] compute dtype
  DType dt = DType::F32;
  int64_t O = 0, C = 0, kh = 0, kw = 0, stride = 1;
  Padding2d pad;
  std::unique_ptr<cpu::ConvNhwc> conv;

  int64_t out_h(int64_t H) const { return (H + pad.top + pad.bottom - kh) / stride + 1; }
  int64_t out_w(int64_t W) const { return (W + pad.left + pad.right - kw) / stride + 1; }

  void check_input(const Tensor& x) const {
    if (x.ndim() != 4) fail("[conv2d] input must be channels-last [B, H, W, C], got ", shape_str(x.shape()));
    if (x.dtype() != dt)
      fail("[conv2d] input is ", dtype_name(x.dtype()), " but the convolution computes in ", dtype_name(dt));
    if (x.dim(3) != C)
      fail("[conv2d] input has ", x.dim(3), " channels but weight ", shape_str(w.shape()), " expects ", C);
    if (x.dim(1) + pad.top + pad.bottom < kh || x.dim(2) + pad.left + pad.right < kw)
      fail("[conv2d] input ", shape_str(x.shape()), " (padded) is smaller than the kernel ", kh, "x", kw);
  }
  void run(const Tensor& x, void* y, cpu::ConvNhwc::Mode mode) const {
    conv->run(x.raw(), x.dim(0), x.dim(1), x.dim(2), y, mode);
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
  auto m = std::make_shared<Impl>();
  m->w = w;
  m->dt = w.dtype();
  m->O = w.dim(0);
  m->C = w.dim(1);
  m->kh = w.dim(2);
  m->kw = w.dim(3);
  m->stride = stride;
  m->pad = pad;
  m->conv = std::make_unique<cpu::ConvNhwc>(w, bias.to(DType::F32), stride, pad.top, pad.bottom, pad.left, pad.right);
  impl_ = std::move(m);
}

Tensor ChannelsLastConv2d::forward(const Tensor& x) const {
  ZI_ASSERT(impl_, "ChannelsLastConv2d used before init");
  const Impl& m = *impl_;
  m.check_input(x);
  Tensor y = Tensor::empty(m.dt, {x.dim(0), m.out_h(x.dim(1)), m.out_w(x.dim(2)), m.O});  // [B, OH, OW, O]
  if (y.numel() == 0) return y;
  m.run(x, y.raw(), cpu::ConvNhwc::Mode::ChannelsLast);
  return y;
}

void ChannelsLastConv2d::forward_into(const Tensor& x, Tensor& y) const {
  ZI_ASSERT(impl_, "ChannelsLastConv2d used before init");
  const Impl& m = *impl_;
  m.check_input(x);
  const Shape want{x.dim(0), m.out_h(x.dim(1)), m.out_w(x.dim(2)), m.O};
  if (y.dtype() != m.dt || y.shape() != want)
    fail("[conv2d] output must be ", dtype_name(m.dt), " ", shape_str(want), ", got ", dtype_name(y.dtype()), " ",
         shape_str(y.shape()));
  if (y.numel() == 0) return;
  m.run(x, y.raw(), cpu::ConvNhwc::Mode::ChannelsLast);
}

void ChannelsLastConv2d::forward_accumulate(const Tensor& x, Tensor& y) const {
  ZI_ASSERT(impl_, "ChannelsLastConv2d used before init");
  const Impl& m = *impl_;
  m.check_input(x);
  const Shape want{x.dim(0), m.out_h(x.dim(1)), m.out_w(x.dim(2)), m.O};
  if (m.dt != DType::F32 || y.dtype() != DType::F32 || y.shape() != want)
    fail("[conv2d] accumulate target must be float32 ", shape_str(want), " with float32 compute, got ",
         dtype_name(y.dtype()), " ", shape_str(y.shape()));
  if (y.numel() == 0) return;
  m.run(x, y.raw(), cpu::ConvNhwc::Mode::Accumulate);
}

void ChannelsLastConv2d::forward_residual(const Tensor& x, Tensor& y, ScratchSlots& scratch, int slot) const {
  ZI_ASSERT(impl_, "ChannelsLastConv2d used before init");
  if (impl_->dt == DType::F32) return forward_accumulate(x, y);
  Tensor c = scratch.get(slot, y.dtype(), y.shape());
  forward_into(x, c);
  add_as_(y, c);
}

Tensor ChannelsLastConv2d::forward_nchw(const Tensor& x) const {
  ZI_ASSERT(impl_, "ChannelsLastConv2d used before init");
  const Impl& m = *impl_;
  m.check_input(x);
  Tensor y = Tensor::empty(DType::F32, {x.dim(0), m.O, m.out_h(x.dim(1)), m.out_w(x.dim(2))});  // [B, O, OH, OW]
  if (y.numel() == 0) return y;
  m.run(x, y.raw(), cpu::ConvNhwc::Mode::Nchw);
  if (m.dt == DType::BF16) round_to_bf16_(y);  // what a bf16 convolution stores
  return y;
}

}  // namespace zimage::ops
