// 2-D convolution (torch.nn.functional.conv2d semantics, NCHW) on oneDNN.
#include "backend/cpu/kernels.h"
#include "ops/ops.h"

namespace zimage::ops {

Tensor prepare_conv_weight(const Tensor& w, DType compute) {
  if (compute == DType::BF16) return w.to(DType::BF16);
  return w.to(DType::F32);
}

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, int64_t stride, Padding2d pad) {
  if (w.ndim() != 4) fail("[conv2d] weight must be [O, C, kh, kw] but has shape ", shape_str(w.shape()));
  if (x.ndim() != 4) fail("[conv2d] input must be [B, C, H, W] but has shape ", shape_str(x.shape()));
  if (x.dtype() != DType::F32) fail("[conv2d] input must be float32, got ", dtype_name(x.dtype()));
  if (x.dim(1) != w.dim(1))
    fail("[conv2d] input has ", x.dim(1), " channels but weight ", shape_str(w.shape()), " expects ", w.dim(1));
  if (stride < 1) fail("[conv2d] stride must be >= 1, got ", stride);
  if (pad.top < 0 || pad.bottom < 0 || pad.left < 0 || pad.right < 0)
    fail("[conv2d] negative padding (", pad.top, ", ", pad.bottom, ", ", pad.left, ", ", pad.right, ")");
  if (bias && bias->numel() != w.dim(0)) fail("[conv2d] bias has ", bias->numel(), " elements, expected ", w.dim(0));
  cpu::ConvShape s{x.dim(0), x.dim(1), x.dim(2), x.dim(3),   w.dim(0), w.dim(2), w.dim(3),
                   stride,   stride,   pad.top,  pad.bottom, pad.left, pad.right};
  if (s.H + s.pt + s.pb < s.kh || s.W + s.pl + s.pr < s.kw)
    fail("[conv2d] input ", shape_str(x.shape()), " (padded) is smaller than the kernel ", s.kh, "x", s.kw);
  Tensor y = Tensor::empty(DType::F32, {s.N, s.O, s.out_h(), s.out_w()});  // [B, O, OH, OW]
  Tensor b32;
  if (bias) b32 = bias->to(DType::F32);
  const float* bp = bias ? b32.f32() : nullptr;
  if (w.dtype() == DType::BF16) {
    cpu::conv2d(s, x.raw(), w.raw(), DType::BF16, bp, y.f32());  // x rounded to bf16 by the kernel
  } else {
    Tensor w32 = w.to(DType::F32);
    cpu::conv2d(s, x.raw(), w32.raw(), DType::F32, bp, y.f32());
  }
  return y;
}

}  // namespace zimage::ops
