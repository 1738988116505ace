#include "transformer/transformer_block.h"

#include <cmath>

#include "ops/ops.h"

namespace zimage::transformer {

FeedForward::FeedForward(const WeightLoader& w, const std::string& prefix, int64_t dim, int64_t hidden_dim)
    : storage_(w.compute()) {
  w1_ = w.linear_weight(prefix + "w1.weight", hidden_dim, dim);
  w2_ = w.linear_weight(prefix + "w2.weight", dim, hidden_dim);
  w3_ = w.linear_weight(prefix + "w3.weight", hidden_dim, dim);
}

Tensor FeedForward::forward(const Tensor& x) const {
  const bool bf = storage_ == DType::BF16;
  Tensor a = weights::linear(x, w1_);  // [T, hidden]
  Tensor b = weights::linear(x, w3_);  // [T, hidden]
  if (bf) {
    ops::round_to_bf16_(a);
    ops::round_to_bf16_(b);
  }
  Tensor h = ops::silu_mul_as(a, b, storage_);
  Tensor y = weights::linear(h, w2_);  // [T, dim]
  if (bf) ops::round_to_bf16_(y);
  return y;
}

void FeedForward::forward_bf16(BlockBuffers::Views& buf) const {
  // f32 GEMM results (rounded to bf16 by their readers: oneDNN's bf16-output kernels accumulate
  // in another order, so they are not bit-identical to forward()).
  weights::linear_into(buf.xb, w1_, nullptr, buf.a);  // [T, hidden] f32
  weights::linear_into(buf.xb, w3_, nullptr, buf.b);  // [T, hidden] f32
  ops::silu_mul_bf16(buf.a, buf.b, buf.h);        // [T, hidden] bf16
  weights::linear_into(buf.h, w2_, nullptr, buf.proj);  // [T, dim] f32
}

ZImageTransformerBlock::ZImageTransformerBlock(const WeightLoader& w, const std::string& prefix,
                                               const ZImageTransformerConfig& cfg, bool modulation)
    : storage_(w.compute()), dim_(cfg.dim), heads_(cfg.n_heads), hidden_(cfg.ffn_hidden_dim()), eps_(float(cfg.norm_eps)), modulation_(modulation) {
  attention_ = ZSingleStreamAttention(w, prefix + "attention.", cfg.dim, cfg.n_heads, cfg.qk_norm);
  feed_forward_ = FeedForward(w, prefix + "feed_forward.", cfg.dim, cfg.ffn_hidden_dim());
  attention_norm1_ = w.f32(prefix + "attention_norm1.weight", {cfg.dim});
  ffn_norm1_ = w.f32(prefix + "ffn_norm1.weight", {cfg.dim});
  attention_norm2_ = w.f32(prefix + "attention_norm2.weight", {cfg.dim});
  ffn_norm2_ = w.f32(prefix + "ffn_norm2.weight", {cfg.dim});
  if (modulation) {
    adaln_w_ = w.linear_weight(prefix + "adaLN_modulation.0.weight", 4 * cfg.dim, cfg.adaln_dim());
    adaln_b_ = w.f32(prefix + "adaLN_modulation.0.bias", {4 * cfg.dim});
  }
}

Tensor ZImageTransformerBlock::forward(Tensor x, const std::vector<int64_t>& rows, const Tensor& rope,
                                       const Tensor& adaln, BlockBuffers& buffers) const {
  const bool bf = storage_ == DType::BF16;
  const int64_t D = dim_;
  auto norm = [&](const Tensor& t, const Tensor& w) { return ops::rms_norm_as(t, w, eps_, storage_); };
  if (!modulation_ && bf) {
    BlockBuffers::Views buf = buffers.for_tokens(x.dim(0), D, heads_, hidden_, x.device());
    ops::rms_norm_modulate_bf16(x, attention_norm1_, Tensor(), rows, eps_, buf.xb);
    attention_.forward_bf16(buf, rows, rope);
    ops::rms_norm_gate_add_bf16_(x, Tensor(), buf.proj, attention_norm2_, rows, eps_);
    ops::rms_norm_modulate_bf16(x, ffn_norm1_, Tensor(), rows, eps_, buf.xb);
    feed_forward_.forward_bf16(buf);
    ops::rms_norm_gate_add_bf16_(x, Tensor(), buf.proj, ffn_norm2_, rows, eps_);
    return x;
  }
  if (!modulation_) {
    Tensor attn_out = attention_.forward(norm(x, attention_norm1_), rows, rope);
    ops::gate_add_(x, Tensor(), norm(attn_out, attention_norm2_), rows, storage_);
    Tensor ff = feed_forward_.forward(norm(x, ffn_norm1_));
    ops::gate_add_(x, Tensor(), norm(ff, ffn_norm2_), rows, storage_);
    return x;
  }
  ZI_ASSERT(adaln.defined() && adaln.ndim() == 2 && adaln.dim(0) == int64_t(rows.size()));
  Tensor mod = weights::linear(adaln, adaln_w_, &adaln_b_);  // [B, 4 * dim]
  if (bf) ops::round_to_bf16_(mod);
  // chunk(4): scale_msa, gate_msa, scale_mlp, gate_mlp; gates through tanh, scales as 1 + scale.
  const auto [scale_msa, gate_msa, scale_mlp, gate_mlp] = ops::adaln_chunks(mod, storage_);
  if (bf) {
    // Fused bf16 path: the same roundings as below, in fewer passes over planned buffers.
    BlockBuffers::Views buf = buffers.for_tokens(x.dim(0), D, heads_, hidden_, x.device());
    ops::rms_norm_modulate_bf16(x, attention_norm1_, scale_msa, rows, eps_, buf.xb);
    attention_.forward_bf16(buf, rows, rope);
    ops::rms_norm_gate_add_bf16_(x, gate_msa, buf.proj, attention_norm2_, rows, eps_);
    ops::rms_norm_modulate_bf16(x, ffn_norm1_, scale_mlp, rows, eps_, buf.xb);
    feed_forward_.forward_bf16(buf);
    ops::rms_norm_gate_add_bf16_(x, gate_mlp, buf.proj, ffn_norm2_, rows, eps_);
    return x;
  }
  // Attention block
  Tensor attn_out = attention_.forward(ops::modulate(norm(x, attention_norm1_), scale_msa, rows, storage_), rows, rope);
  ops::gate_add_(x, gate_msa, norm(attn_out, attention_norm2_), rows, storage_);
  // FFN block
  Tensor ff = feed_forward_.forward(ops::modulate(norm(x, ffn_norm1_), scale_mlp, rows, storage_));
  ops::gate_add_(x, gate_mlp, norm(ff, ffn_norm2_), rows, storage_);
  return x;
}

}  // namespace zimage::transformer
