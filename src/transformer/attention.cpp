#include "transformer/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ops/ops.h"

namespace zimage::transformer {

namespace {
constexpr float kQkNormEps = 1e-5f;  // Attention(..., qk_norm="rms_norm", eps=1e-5)
}

ZSingleStreamAttention::ZSingleStreamAttention(const WeightLoader& w, const std::string& prefix, int64_t dim,
                                               int64_t heads, bool qk_norm)
    : storage_(w.compute()), dim_(dim), heads_(heads), head_dim_(dim / heads) {
  to_q_ = w.linear_weight(prefix + "to_q.weight", dim, dim);
  to_k_ = w.linear_weight(prefix + "to_k.weight", dim, dim);
  to_v_ = w.linear_weight(prefix + "to_v.weight", dim, dim);
  to_out_ = w.linear_weight(prefix + "to_out.0.weight", dim, dim);
  if (qk_norm) {
    norm_q_ = w.f32(prefix + "norm_q.weight", {head_dim_});
    norm_k_ = w.f32(prefix + "norm_k.weight", {head_dim_});
  }
}

Tensor ZSingleStreamAttention::forward(const Tensor& x, const std::vector<int64_t>& rows, const Tensor& rope) const {
  const bool bf = storage_ == DType::BF16;
  const int64_t T = x.dim(0), H = heads_, D = head_dim_;
  auto project = [&](const weights::LinearWeight& w, const Tensor& norm) {
    Tensor y = weights::linear(x, w);  // [T, dim]
    if (bf) ops::round_to_bf16_(y);
    y = y.reshape({T, H, D});  // unflatten(-1, (heads, -1)): [T, H, D]
    if (norm.defined() && norm.numel() > 0) y = ops::rms_norm_as(y, norm, kQkNormEps, storage_);
    return y;
  };
  Tensor q = project(to_q_, norm_q_);
  Tensor k = project(to_k_, norm_k_);
  Tensor v = project(to_v_, Tensor());
  // apply_rotary_emb: float32 complex product, then type_as(x_in)
  ops::rope_interleaved_(q, rope);
  ops::rope_interleaved_(k, rope);
  if (bf) {
    ops::round_to_bf16_(q);
    ops::round_to_bf16_(k);
  }
  const float scale = 1.f / std::sqrt(float(D));
  Tensor o = Tensor::empty(DType::F32, {T, H, D}, x.device());  // [T, H, D]
  int64_t off = 0;
  for (int64_t n : rows) {
    if (n > 0) {
      auto item = [&](const Tensor& t) { return t.slice0(off, off + n).reshape({1, n, H, D}); };  // [1, S, H, D]
      // bf16: torch's CPU flash kernel rounds the probabilities to bf16 before the product with v.
      Tensor oi = bf ? ops::attention_torch_bf16(item(q), item(k), item(v), scale, /*causal=*/false)
                     : ops::attention(item(q), item(k), item(v), scale, /*causal=*/false);
      o.slice0(off, off + n).copy_from(oi);
    }
    off += n;
  }
  ZI_ASSERT(off == T, "rows sum ", off, " != tokens ", T);
  if (bf) ops::round_to_bf16_(o);
  Tensor out = weights::linear(o.reshape({T, H * D}), to_out_);  // flatten(2, 3): [T, dim]
  if (bf) ops::round_to_bf16_(out);
  return out;
}

BlockBuffers::Views BlockBuffers::for_tokens(int64_t T, int64_t dim, int64_t heads, int64_t hidden, Device device) {
  const bool same = dim == dim_ && heads == heads_ && hidden == hidden_ && device == xb_.device();
  if (T > rows_ || !same) {
    rows_ = std::max(T, same ? rows_ : int64_t(0));
    dim_ = dim, heads_ = heads, hidden_ = hidden;
    xb_ = Tensor::empty(DType::BF16, {rows_, dim}, device);
    proj_ = Tensor::empty(DType::F32, {rows_, dim}, device);
    q_ = Tensor::empty(DType::F32, {rows_, heads, dim / heads}, device);
    k_ = Tensor::empty(DType::F32, {rows_, heads, dim / heads}, device);
    v_ = Tensor::empty(DType::F32, {rows_, heads, dim / heads}, device);
    a_ = Tensor::empty(DType::F32, {rows_, hidden}, device);
    b_ = Tensor::empty(DType::F32, {rows_, hidden}, device);
    h_ = Tensor::empty(DType::BF16, {rows_, hidden}, device);
  }
  return {xb_.slice0(0, T), q_.slice0(0, T), k_.slice0(0, T), v_.slice0(0, T),
          proj_.slice0(0, T), a_.slice0(0, T), b_.slice0(0, T), h_.slice0(0, T)};
}

void ZSingleStreamAttention::forward_bf16(BlockBuffers::Views& buf, const std::vector<int64_t>& rows,
                                          const Tensor& rope) const {
  ZI_ASSERT(storage_ == DType::BF16);
  const int64_t T = buf.xb.dim(0), H = heads_, D = head_dim_;
  // q, k, v = to_q/k/v(x): f32 results, then (per head) bf16 rounding, RMSNorm, RoPE, as forward().
  weights::linear_into(buf.xb, to_q_, nullptr, buf.q);  // [T, H, D]
  weights::linear_into(buf.xb, to_k_, nullptr, buf.k);  // [T, H, D]
  weights::linear_into(buf.xb, to_v_, nullptr, buf.v);  // [T, H, D]
  ops::head_norm_rope_bf16_(buf.q, norm_q_, rope, kQkNormEps);
  ops::head_norm_rope_bf16_(buf.k, norm_k_, rope, kQkNormEps);
  ops::head_norm_rope_bf16_(buf.v, Tensor(), Tensor(), kQkNormEps);
  const float scale = 1.f / std::sqrt(float(D));
  int64_t off = 0;
  for (int64_t n : rows) {
    if (n > 0) {
      auto item = [&](const Tensor& t) { return t.slice0(off, off + n).reshape({1, n, H, D}); };  // [1, S, H, D]
      // The kernel's result holds bf16 values already: the conversion below is exact.
      const Tensor oi = ops::attention_torch_bf16(item(buf.q), item(buf.k), item(buf.v), scale, /*causal=*/false);
      Tensor dst = buf.xb.slice0(off, off + n);  // flatten(2, 3): [S, H * D] bf16
      ops::to_bf16_into(oi, dst);
    }
    off += n;
  }
  ZI_ASSERT(off == T, "rows sum ", off, " != tokens ", T);
  weights::linear_into(buf.xb, to_out_, nullptr, buf.proj);  // [T, dim] f32
}

}  // namespace zimage::transformer
