#include "transformer/transformer_block.h"

#include <array>
#include <cmath>

#include "ops/ops.h"

namespace zimage::transformer {

FeedForward::FeedForward(const WeightLoader& w, const std::string& prefix, int64_t dim, int64_t hidden_dim) {
  w1_ = w.linear_weight(prefix + "w1.weight", hidden_dim, dim);
  w2_ = w.linear_weight(prefix + "w2.weight", dim, hidden_dim);
  w3_ = w.linear_weight(prefix + "w3.weight", hidden_dim, dim);
}

void FeedForward::forward(ops::Precision p, BlockBuffers::Views& buf) const {
  // w2(silu(w1(x)) * w3(x)); the GEMM results stay f32 until their reader stores them.
  weights::linear_into(buf.xb, w1_, nullptr, buf.a);    // [T, hidden] f32
  weights::linear_into(buf.xb, w3_, nullptr, buf.b);    // [T, hidden] f32
  ops::silu_mul_into(p, buf.a, buf.b, buf.h);           // [T, hidden]
  weights::linear_into(buf.h, w2_, nullptr, buf.proj);  // [T, dim] f32
}

void block_tensor_specs(std::vector<TensorSpec>& s, const std::string& p, const ZImageTransformerConfig& c,
                        bool modulation) {
  auto add = [&](const std::string& name, Shape shape) { s.push_back({name, std::move(shape)}); };
  const int64_t dim = c.dim, hd = c.head_dim(), hidden = c.ffn_hidden_dim(), adaln = c.adaln_dim();
  for (const char* k : {"to_q", "to_k", "to_v", "to_out.0"}) add(p + "attention." + k + ".weight", {dim, dim});
  if (c.qk_norm) {
    add(p + "attention.norm_q.weight", {hd});
    add(p + "attention.norm_k.weight", {hd});
  }
  add(p + "feed_forward.w1.weight", {hidden, dim});
  add(p + "feed_forward.w2.weight", {dim, hidden});
  add(p + "feed_forward.w3.weight", {hidden, dim});
  for (const char* k : {"attention_norm1", "ffn_norm1", "attention_norm2", "ffn_norm2"}) add(p + k + ".weight", {dim});
  if (modulation) {
    add(p + "adaLN_modulation.0.weight", {4 * dim, adaln});
    add(p + "adaLN_modulation.0.bias", {4 * dim});
  }
}

ZImageTransformerBlock::ZImageTransformerBlock(const WeightLoader& w, const std::string& prefix,
                                               const ZImageTransformerConfig& cfg, bool modulation)
    : dim_(cfg.dim),
      heads_(cfg.n_heads),
      hidden_(cfg.ffn_hidden_dim()),
      eps_(float(cfg.norm_eps)),
      modulation_(modulation) {
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

Tensor ZImageTransformerBlock::forward(ops::Precision p, Tensor x, const std::vector<int64_t>& rows, const Tensor& rope,
                                       const Tensor& adaln, BlockBuffers& buffers) const {
  const int64_t D = dim_;
  // Without modulation the scales and gates are undefined: the ops skip them.
  Tensor scale_msa, gate_msa, scale_mlp, gate_mlp;
  if (modulation_) {
    ZI_ASSERT(adaln.defined() && adaln.ndim() == 2 && adaln.dim(0) == int64_t(rows.size()));
    Tensor mod = weights::linear(adaln, adaln_w_, &adaln_b_);  // [B, 4 * dim]
    ops::store_(p, mod);
    // chunk(4): scale_msa, gate_msa, scale_mlp, gate_mlp; gates through tanh, scales as 1 + scale.
    const std::array<Tensor, 4> chunks = ops::adaln_chunks(mod, p.storage());
    scale_msa = chunks[0], gate_msa = chunks[1], scale_mlp = chunks[2], gate_mlp = chunks[3];
  }
  BlockBuffers::Views buf = buffers.for_tokens(x.dim(0), D, heads_, hidden_, p.storage(), x.device());
  // Attention block: x = x + gate_msa * attention_norm2(attention(attention_norm1(x) * scale_msa))
  ops::rms_norm_modulate(p, x, attention_norm1_, scale_msa, rows, eps_, buf.xb);
  attention_.forward(p, buf, rows, rope);
  ops::rms_norm_gate_add_(p, x, gate_msa, buf.proj, attention_norm2_, rows, eps_);
  // FFN block: x = x + gate_mlp * ffn_norm2(feed_forward(ffn_norm1(x) * scale_mlp))
  ops::rms_norm_modulate(p, x, ffn_norm1_, scale_mlp, rows, eps_, buf.xb);
  feed_forward_.forward(p, buf);
  ops::rms_norm_gate_add_(p, x, gate_mlp, buf.proj, ffn_norm2_, rows, eps_);
  return x;
}

}  // namespace zimage::transformer
