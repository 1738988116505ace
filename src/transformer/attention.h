// Attention with ZSingleStreamAttnProcessor (transformer_z_image.py): to_q/to_k/to_v without bias,
// per-head RMSNorm on q and k (eps 1e-5), interleaved complex RoPE, SDPA (scale 1/sqrt(head_dim)),
// to_out.0 without bias.
#pragma once
#include <vector>

#include "core/tensor.h"
#include "ops/precision.h"
#include "transformer/weights.h"

namespace zimage::transformer {

// Activation buffers of the block, allocated once for the longest sequence of a run and reused
// (as views of their first T rows) by every block of every forward: no allocation inside the
// layer loop. GEMM inputs (xb, h) are held in the precision's storage dtype, GEMM results in f32.
class BlockBuffers {
 public:
  struct Views {
    Tensor xb;       // [T, dim] storage: the next GEMM's normalised (+ modulated) input
    Tensor q, k, v;  // [T, heads, head_dim] f32
    Tensor proj;     // [T, dim] f32: to_out / w2 output
    Tensor a, b;     // [T, hidden] f32: w1 / w3 outputs
    Tensor h;        // [T, hidden] storage: silu(a) * b
  };
  // Views for T tokens on `device`; grows the buffers when T exceeds every earlier request.
  Views for_tokens(int64_t T, int64_t dim, int64_t heads, int64_t hidden, DType storage, Device device = Device::CPU);

 private:
  int64_t rows_ = 0, dim_ = 0, heads_ = 0, hidden_ = 0;
  DType storage_ = DType::F32;
  Tensor xb_, q_, k_, v_, proj_, a_, b_, h_;
};

class ZSingleStreamAttention {
 public:
  ZSingleStreamAttention() = default;
  ZSingleStreamAttention(const WeightLoader& w, const std::string& prefix, int64_t dim, int64_t heads, bool qk_norm);
  // buf.xb: [T, dim] packed tokens of the batch items (item b owns rows[b] consecutive rows; each
  // item attends only to its own tokens, i.e. diffusers' padded batch with a key-padding mask);
  // overwritten (reused as scratch once q, k, v are projected). rope: [T, head_dim/2, 2].
  // Result in buf.proj: [T, dim] f32, the raw to_out GEMM result (stored by its reader).
  void forward(ops::Precision p, BlockBuffers::Views& buf, const std::vector<int64_t>& rows, const Tensor& rope) const;

 private:
  int64_t heads_ = 0, head_dim_ = 0;
  weights::LinearWeight to_q_, to_k_, to_v_, to_out_;
  Tensor norm_q_, norm_k_;
};

}  // namespace zimage::transformer
