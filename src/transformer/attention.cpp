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
    : heads_(heads), head_dim_(dim / heads) {
  to_q_ = w.linear_weight(prefix + "to_q.weight", dim, dim);
  to_k_ = w.linear_weight(prefix + "to_k.weight", dim, dim);
  to_v_ = w.linear_weight(prefix + "to_v.weight", dim, dim);
  to_out_ = w.linear_weight(prefix + "to_out.0.weight", dim, dim);
  if (qk_norm) {
    norm_q_ = w.f32(prefix + "norm_q.weight", {head_dim_});
    norm_k_ = w.f32(prefix + "norm_k.weight", {head_dim_});
  }
}

BlockBuffers::Views BlockBuffers::for_tokens(int64_t T, int64_t dim, int64_t heads, int64_t hidden, DType storage,
                                             Device device) {
  const bool same =
      dim == dim_ && heads == heads_ && hidden == hidden_ && storage == storage_ && device == xb_.device();
  if (T > rows_ || !same) {
    rows_ = std::max(T, same ? rows_ : int64_t(0));
    dim_ = dim, heads_ = heads, hidden_ = hidden, storage_ = storage;
    xb_ = Tensor::empty(storage, {rows_, dim}, device);
    proj_ = Tensor::empty(DType::F32, {rows_, dim}, device);
    q_ = Tensor::empty(DType::F32, {rows_, heads, dim / heads}, device);
    k_ = Tensor::empty(DType::F32, {rows_, heads, dim / heads}, device);
    v_ = Tensor::empty(DType::F32, {rows_, heads, dim / heads}, device);
    a_ = Tensor::empty(DType::F32, {rows_, hidden}, device);
    b_ = Tensor::empty(DType::F32, {rows_, hidden}, device);
    h_ = Tensor::empty(storage, {rows_, hidden}, device);
  }
  return {xb_.slice0(0, T),   q_.slice0(0, T), k_.slice0(0, T), v_.slice0(0, T),
          proj_.slice0(0, T), a_.slice0(0, T), b_.slice0(0, T), h_.slice0(0, T)};
}

void ZSingleStreamAttention::forward(ops::Precision p, BlockBuffers::Views& buf, const std::vector<int64_t>& rows,
                                     const Tensor& rope) const {
  const int64_t T = buf.xb.dim(0), H = heads_, D = head_dim_;
  // q, k, v = to_q/k/v(x), unflatten(-1, (heads, -1)); per head: norm_q / norm_k, RoPE.
  weights::linear_into(buf.xb, to_q_, nullptr, buf.q);  // [T, H, D]
  weights::linear_into(buf.xb, to_k_, nullptr, buf.k);  // [T, H, D]
  weights::linear_into(buf.xb, to_v_, nullptr, buf.v);  // [T, H, D]
  ops::head_norm_rope_(p, buf.q, norm_q_, rope, kQkNormEps);
  ops::head_norm_rope_(p, buf.k, norm_k_, rope, kQkNormEps);
  ops::head_norm_rope_(p, buf.v, Tensor(), Tensor(), kQkNormEps);
  const float scale = 1.f / std::sqrt(float(D));
  int64_t off = 0;
  for (int64_t n : rows) {
    if (n > 0) {
      auto item = [&](const Tensor& t) { return t.slice0(off, off + n).reshape({1, n, H, D}); };  // [1, S, H, D]
      const Tensor oi = ops::attention(p, item(buf.q), item(buf.k), item(buf.v), scale, /*causal=*/false);
      Tensor dst = buf.xb.slice0(off, off + n);  // flatten(2, 3): [S, H * D]
      ops::store_into(p, oi, dst);
    }
    off += n;
  }
  ZI_ASSERT(off == T, "rows sum ", off, " != tokens ", T);
  weights::linear_into(buf.xb, to_out_, nullptr, buf.proj);  // [T, dim] f32
}

}  // namespace zimage::transformer
