#include "backend/cuda/dit_block.h"

#include <cmath>
#include <random>

#include "backend/cuda/context.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/ops.h"

namespace zimage::cuda {

namespace {
constexpr float kQkNormEps = 1e-5f;  // Attention(..., qk_norm="rms_norm", eps=1e-5)
}

DitBlock::DitBlock(const WeightStore& store, const std::string& prefix, const DitBlockDims& d, DType compute)
    : d_(d), compute_(compute) {
  const int64_t D = d.dim, hd = d.dim / d.heads;
  auto lin = [&](const std::string& n, int64_t out, int64_t in) {
    return DeviceTensor::upload(store.get(prefix + n, {out, in}), compute, "transformer");
  };
  auto vec = [&](const std::string& n, int64_t len) {
    return DeviceTensor::upload(store.get(prefix + n, {len}), DType::F32, "transformer");
  };
  to_q_ = lin("attention.to_q.weight", D, D);
  to_k_ = lin("attention.to_k.weight", D, D);
  to_v_ = lin("attention.to_v.weight", D, D);
  to_out_ = lin("attention.to_out.0.weight", D, D);
  if (store.has(prefix + "attention.norm_q.weight")) {
    norm_q_ = vec("attention.norm_q.weight", hd);
    norm_k_ = vec("attention.norm_k.weight", hd);
  }
  w1_ = lin("feed_forward.w1.weight", d.hidden, D);
  w2_ = lin("feed_forward.w2.weight", D, d.hidden);
  w3_ = lin("feed_forward.w3.weight", d.hidden, D);
  attention_norm1_ = vec("attention_norm1.weight", D);
  ffn_norm1_ = vec("ffn_norm1.weight", D);
  attention_norm2_ = vec("attention_norm2.weight", D);
  ffn_norm2_ = vec("ffn_norm2.weight", D);
  if (d.modulation) {
    const DeviceTensor w = lin("adaLN_modulation.0.weight", 4 * D, d.adaln_dim);
    const DeviceTensor b = convert(vec("adaLN_modulation.0.bias", 4 * D), compute);  // bias in the GEMM's result dtype
    for (int c = 0; c < 4; ++c) {
      adaln_w_[c] = w.slice0(c * D, (c + 1) * D);  // rows of chunk c: [D, adaln_dim]
      adaln_b_[c] = b.slice0(c * D, (c + 1) * D);
    }
  }
}

DitBlock DitBlock::random(const DitBlockDims& d, DType compute, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto rnd = [&](Shape s, float scale, DType dt) {
    std::uniform_real_distribution<float> u(-scale, scale);
    std::vector<float> v(size_t(shape_numel(s)));
    for (auto& x : v) x = u(rng);
    return DeviceTensor::upload(Tensor::from_f32(std::move(s), v), dt, "transformer");
  };
  const int64_t D = d.dim, hd = d.dim / d.heads;
  const float sD = 1.f / std::sqrt(float(D)), sH = 1.f / std::sqrt(float(d.hidden));
  DitBlock b;
  b.d_ = d;
  b.compute_ = compute;
  b.to_q_ = rnd({D, D}, sD, compute), b.to_k_ = rnd({D, D}, sD, compute), b.to_v_ = rnd({D, D}, sD, compute);
  b.to_out_ = rnd({D, D}, sD, compute);
  b.norm_q_ = rnd({hd}, 1.f, DType::F32), b.norm_k_ = rnd({hd}, 1.f, DType::F32);
  b.w1_ = rnd({d.hidden, D}, sD, compute), b.w3_ = rnd({d.hidden, D}, sD, compute);
  b.w2_ = rnd({D, d.hidden}, sH, compute);
  b.attention_norm1_ = rnd({D}, 1.f, DType::F32), b.ffn_norm1_ = rnd({D}, 1.f, DType::F32);
  b.attention_norm2_ = rnd({D}, 1.f, DType::F32), b.ffn_norm2_ = rnd({D}, 1.f, DType::F32);
  if (d.modulation)
    for (int c = 0; c < 4; ++c) {
      b.adaln_w_[c] = rnd({D, d.adaln_dim}, 1.f / std::sqrt(float(d.adaln_dim)), compute);
      b.adaln_b_[c] = rnd({D}, 0.1f, compute);
    }
  return b;
}

DeviceTensor DitBlock::attention(const DeviceTensor& xn, const std::vector<int64_t>& rows, const DeviceTensor& rope) const {
  const int64_t T = xn.dim(0), H = d_.heads, hd = d_.dim / d_.heads;
  auto project = [&](const DeviceTensor& w, const DeviceTensor& norm) {
    DeviceTensor y = linear(xn, w, nullptr, compute_).reshape({T, H, hd});  // unflatten: [T, H, hd]
    if (norm.defined() && norm.numel() > 0) y = rms_norm(y, &norm, kQkNormEps);
    return y;
  };
  DeviceTensor q = project(to_q_, norm_q_), k = project(to_k_, norm_k_), v = project(to_v_, DeviceTensor());
  rope_interleaved_(q, rope);
  rope_interleaved_(k, rope);
  const float scale = 1.f / std::sqrt(float(hd));
  DeviceTensor o;
  if (rows.size() <= 1) {
    o = ::zimage::cuda::attention(q.reshape({1, T, H, hd}), k.reshape({1, T, H, hd}), v.reshape({1, T, H, hd}), scale, false)
            .reshape({T, H * hd});
  } else {  // items attend within their own rows
    o = DeviceTensor::empty(compute_, {T, H * hd}, "transformer");
    int64_t off = 0;
    for (int64_t n : rows) {
      if (n > 0) {
        auto item = [&](const DeviceTensor& t) { return t.slice0(off, off + n).reshape({1, n, H, hd}); };  // [1, S, H, hd]
        DeviceTensor oi = ::zimage::cuda::attention(item(q), item(k), item(v), scale, false);
        DeviceTensor dst = o.slice0(off, off + n);
        ZI_CUDA_CHECK(cudaMemcpyAsync(dst.data(), oi.data(), oi.nbytes(), cudaMemcpyDeviceToDevice, ctx().stream));
      }
      off += n;
    }
  }
  return linear(o, to_out_, nullptr, compute_);  // [T, dim]
}

DeviceTensor DitBlock::forward(const DeviceTensor& x_in, const std::vector<int64_t>& rows, const DeviceTensor& rope,
                               const DeviceTensor& adaln) const {
  DeviceTensor x = convert(x_in, compute_);  // the residual stream: an own copy in the compute dtype
  const float eps = d_.eps;
  auto ffn = [&](const DeviceTensor& h) {
    DeviceTensor a = linear(h, w1_, nullptr, compute_), b = linear(h, w3_, nullptr, compute_);  // [T, hidden]
    return linear(silu_mul(a, b), w2_, nullptr, compute_);                                      // [T, dim]
  };
  if (!d_.modulation) {
    DeviceTensor att = attention(rms_norm(x, &attention_norm1_, eps), rows, rope);
    gate_add_(x, nullptr, rms_norm(att, &attention_norm2_, eps), rows);
    DeviceTensor ff = ffn(rms_norm(x, &ffn_norm1_, eps));
    gate_add_(x, nullptr, rms_norm(ff, &ffn_norm2_, eps), rows);
    return x;
  }
  const DeviceTensor a = convert(adaln, compute_);
  DeviceTensor mod[4];  // scale_msa, gate_msa, scale_mlp, gate_mlp: raw, [B, dim]
  for (int c = 0; c < 4; ++c) mod[c] = linear(a, adaln_w_[c], &adaln_b_[c], compute_);
  DeviceTensor att = attention(rms_norm(x, &attention_norm1_, eps, &mod[0], rows), rows, rope);
  gate_add_(x, &mod[1], rms_norm(att, &attention_norm2_, eps), rows);
  DeviceTensor ff = ffn(rms_norm(x, &ffn_norm1_, eps, &mod[2], rows));
  gate_add_(x, &mod[3], rms_norm(ff, &ffn_norm2_, eps), rows);
  return x;
}

}  // namespace zimage::cuda
