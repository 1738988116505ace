// Channels-last (NHWC) convolution and the NCHW <-> NHWC reorders through oneDNN, behind
// ops::ChannelsLastConv2d / to_channels_last / from_channels_last (ops/channels_last.h, which
// checks the arguments). Only src/ops/ calls these.
#pragma once
#include <cstdint>
#include <memory>

#include "core/tensor.h"

namespace zimage::cpu {

// x [B, C, H, W] f32 -> y [B, H, W, C] of yt (F32 or BF16, rounded to nearest even).
void nchw_to_nhwc(const float* x, int64_t B, int64_t C, int64_t H, int64_t W, void* y, DType yt);
// x [B, H, W, C] of xt (F32 or BF16) -> y [B, C, H, W] f32.
void nhwc_to_nchw(const void* x, DType xt, int64_t B, int64_t C, int64_t H, int64_t W, float* y);

// One convolution (torch semantics, zero padding) on channels-last activations. Per input shape
// and output mode it keeps its convolution_forward primitive and its weights reordered once into
// the layout that primitive wants. Thread-safe; copies of the owning object share it.
class ConvNhwc {
 public:
  enum class Mode {
    ChannelsLast,  // y [N, OH, OW, O] of the compute dtype (BF16: f32 accumulation + bias rounded once)
    Accumulate,    // y [N, OH, OW, O] f32: y += conv(x), bit for bit y + conv(x) (F32 only)
    Nchw,          // y [N, O, OH, OW] f32 (BF16 compute: not rounded here)
  };
  // w [O, C, kh, kw] of the compute dtype (F32 or BF16), bias [O] f32; both are kept (shared).
  ConvNhwc(const Tensor& w, const Tensor& bias, int64_t stride, int64_t pt, int64_t pb, int64_t pl, int64_t pr);
  ~ConvNhwc();
  // x [N, H, W, C] of the compute dtype.
  void run(const void* x, int64_t N, int64_t H, int64_t W, void* y, Mode mode);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace zimage::cpu
