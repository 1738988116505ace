// Convolution-network ops on channels-last (NHWC) activations, the layout oneDNN's fastest CPU
// convolutions (brgemm, AMX for bf16) compute in. A chain of convolutions, group norms, residual
// adds and upsamples then runs without reordering between NCHW and oneDNN's layout around every
// convolution.
//
// A channels-last activation is a Tensor [B, H, W, C] of F32 or BF16. Its dtype is the compute
// dtype: BF16 tensors behave as torch bfloat16 tensors (every op's result rounded to bf16,
// arithmetic in f32), F32 ones plainly.
#pragma once
#include <memory>
#include <vector>

#include "ops/ops.h"

namespace zimage::ops {

// x [B, C, H, W] float32 -> [B, H, W, C] of dt (BF16: rounded to nearest even).
Tensor to_channels_last(const Tensor& x, DType dt);
// [B, H, W, C] (F32 or BF16) -> [B, C, H, W] float32.
Tensor from_channels_last(const Tensor& x);

class ScratchSlots;

// Conv2d (torch semantics, zero padding) on channels-last activations through oneDNN; primitives
// and the weights in each primitive's layout are created once per input shape and kept (copies of
// a ChannelsLastConv2d share them).
class ChannelsLastConv2d {
 public:
  // w [O, C, kh, kw] of the compute dtype (F32 or BF16, see prepare_conv_weight), bias [O].
  void init(const Tensor& w, const Tensor& bias, int64_t stride, Padding2d pad);
  bool initialised() const { return impl_ != nullptr; }
  // x [B, H, W, C] of the compute dtype -> [B, OH, OW, O] of the compute dtype (BF16: the f32
  // accumulation plus bias rounded once, as torch's bf16 convolution).
  Tensor forward(const Tensor& x) const;
  // The same into y, a preallocated [B, OH, OW, O] tensor of the compute dtype (not x's storage).
  void forward_into(const Tensor& x, Tensor& y) const;
  // y = conv(x) + y through oneDNN's sum post-op; F32 only, y [B, OH, OW, O].
  void forward_accumulate(const Tensor& x, Tensor& y) const;
  // y = y + conv(x) (a residual add), y [B, OH, OW, O] of the compute dtype, as torch stores it:
  // F32 fused (forward_accumulate); BF16 conv(x) rounded to bf16 (into scratch slot `slot`),
  // then the sum rounded (add_as_).
  void forward_residual(const Tensor& x, Tensor& y, ScratchSlots& scratch, int slot) const;
  // The result as float32 NCHW [B, O, OH, OW] (BF16 compute: bf16-rounded values).
  Tensor forward_nchw(const Tensor& x) const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// GroupNorm (statistics in double) then SiLU when `silu`, on [B, H, W, C]; same dtype out. BF16
// rounds the normalised value and the SiLU output, as torch's bf16 group_norm and silu.
Tensor group_norm_channels_last(const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias, float eps,
                                bool silu);
// The same into y (x's shape and dtype; y may be x itself: normalised in place).
void group_norm_channels_last_into(const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias, float eps,
                                   bool silu, Tensor& y);

// Group norm statistics per (image, group): pixel count (times channels per group), mean and the
// sum of squared deviations M2. Statistics of separate pieces of an activation (tiles) merge into
// those of the whole (Chan, Golub and LeVeque's pairwise update), so a tiled decoder can normalise
// every tile with the whole image's statistics.
struct GroupNormStats {
  int64_t batch = 0, groups = 0;
  std::vector<double> count, mean, m2;      // [batch * groups]
  void merge(const GroupNormStats& other);  // into an empty object: a copy
};
// Rows [y0, y1) x columns [x0, x1) of an activation.
struct PixelWindow {
  int64_t y0 = 0, y1 = 0, x0 = 0, x1 = 0;
};
// Statistics of x [B, H, W, C] over `window` (nullptr: all pixels); summed in double.
GroupNormStats group_norm_stats_channels_last(const Tensor& x, int64_t groups, const PixelWindow* window = nullptr);
// Normalises x with the given statistics (then SiLU when `silu`) into y; y may be x.
void group_norm_apply_channels_last_into(const Tensor& x, const GroupNormStats& stats, const Tensor& weight,
                                         const Tensor& bias, float eps, bool silu, Tensor& y);
// Nearest 2x upsample of [B, H, W, C] -> [B, 2H, 2W, C].
Tensor upsample_nearest2x_channels_last(const Tensor& x);
// y = y + x elementwise (same shape and dtype, any layout; BF16 rounds the sum).
void add_as_(Tensor& y, const Tensor& x);

// Scratch activations reused between the ops of one forward pass: slot i hands out a tensor
// sharing one growing buffer, so a chain of ops reuses memory instead of faulting in fresh pages
// for every large result. A slot's previous tensor is dead once the slot is asked again.
class ScratchSlots {
 public:
  Tensor get(int slot, DType dt, const Shape& shape);

 private:
  Tensor buf_[4];
};
}  // namespace zimage::ops
