// Follows transformers' Qwen3Model.forward (modeling_qwen3.py), stopping at hidden_states[-2].
#include "text_encoder/qwen3_text_encoder.h"

#include <cmath>
#include <filesystem>

#include "core/gguf.h"
#include "ops/ops.h"
#include "weights/loader.h"

namespace zimage {

namespace {

template <class F>
auto tagged(F&& f) {
  return with_component("text_encoder", std::forward<F>(f));
}

// Qwen3RotaryEmbedding with the default rope type: inv_freq = 1 / theta^(arange(0, D, 2) / D) in
// float32, freqs = position * inv_freq, emb = cat(freqs, freqs); cos/sin are cast to the
// activation dtype (bf16 in a bf16 run).
void rotary_embedding(int64_t S, int64_t D, double theta, ops::Precision prec, Tensor& cos, Tensor& sin) {
  const int64_t half = D / 2;
  std::vector<float> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) inv_freq[size_t(i)] = 1.0f / std::pow(float(theta), float(2 * i) / float(D));
  cos = Tensor::empty(DType::F32, {S, D});  // [S, D]
  sin = Tensor::empty(DType::F32, {S, D});
  float* c = cos.f32();
  float* s = sin.f32();
  for (int64_t p = 0; p < S; ++p)
    for (int64_t i = 0; i < half; ++i) {
      const float f = float(p) * inv_freq[size_t(i)];
      const float cv = prec.store(std::cos(f)), sv = prec.store(std::sin(f));
      c[p * D + i] = c[p * D + half + i] = cv;
      s[p * D + i] = s[p * D + half + i] = sv;
    }
}

// a *= b elementwise (same shape).
void mul_(Tensor& a, const Tensor& b) {
  float* p = a.f32();
  const float* q = b.f32();
  const int64_t n = a.numel();
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) p[i] *= q[i];
}

}  // namespace

std::vector<TensorSpec> Qwen3TextEncoder::expected_tensors(const Qwen3Config& c, const std::string& pre) {
  std::vector<TensorSpec> s;
  const int64_t H = c.hidden_size, I = c.intermediate_size, D = c.head_dim;
  const int64_t Hq = c.num_attention_heads, Hkv = c.num_key_value_heads;
  s.push_back({pre + "embed_tokens.weight", {c.vocab_size, H}});
  // hidden_states[-2]: the last layer and the final norm are never read.
  for (int64_t i = 0; i + 1 < c.num_hidden_layers; ++i) {
    const std::string p = pre + "layers." + std::to_string(i) + ".";
    s.push_back({p + "input_layernorm.weight", {H}});
    s.push_back({p + "post_attention_layernorm.weight", {H}});
    s.push_back({p + "self_attn.q_proj.weight", {Hq * D, H}});
    s.push_back({p + "self_attn.k_proj.weight", {Hkv * D, H}});
    s.push_back({p + "self_attn.v_proj.weight", {Hkv * D, H}});
    s.push_back({p + "self_attn.o_proj.weight", {H, Hq * D}});
    if (c.attention_bias) {
      s.push_back({p + "self_attn.q_proj.bias", {Hq * D}});
      s.push_back({p + "self_attn.k_proj.bias", {Hkv * D}});
      s.push_back({p + "self_attn.v_proj.bias", {Hkv * D}});
      s.push_back({p + "self_attn.o_proj.bias", {H}});
    }
    s.push_back({p + "self_attn.q_norm.weight", {D}});
    s.push_back({p + "self_attn.k_norm.weight", {D}});
    s.push_back({p + "mlp.gate_proj.weight", {I, H}});
    s.push_back({p + "mlp.up_proj.weight", {I, H}});
    s.push_back({p + "mlp.down_proj.weight", {H, I}});
  }
  return s;
}

void Qwen3TextEncoder::convert_llama_cpp_names(WeightStore& ws) {
  if (!ws.has("token_embd.weight")) return;
  static const std::pair<const char*, const char*> kBlk[] = {
      {"attn_norm.weight", "input_layernorm.weight"},    {"ffn_norm.weight", "post_attention_layernorm.weight"},
      {"attn_q.weight", "self_attn.q_proj.weight"},      {"attn_k.weight", "self_attn.k_proj.weight"},
      {"attn_v.weight", "self_attn.v_proj.weight"},      {"attn_output.weight", "self_attn.o_proj.weight"},
      {"attn_q.bias", "self_attn.q_proj.bias"},          {"attn_k.bias", "self_attn.k_proj.bias"},
      {"attn_v.bias", "self_attn.v_proj.bias"},          {"attn_output.bias", "self_attn.o_proj.bias"},
      {"attn_q_norm.weight", "self_attn.q_norm.weight"}, {"attn_k_norm.weight", "self_attn.k_norm.weight"},
      {"ffn_gate.weight", "mlp.gate_proj.weight"},       {"ffn_up.weight", "mlp.up_proj.weight"},
      {"ffn_down.weight", "mlp.down_proj.weight"},
  };
  for (const std::string& n : ws.names()) {
    if (n == "token_embd.weight") {
      ws.alias(n, "embed_tokens.weight");
    } else if (n == "output_norm.weight") {
      ws.alias(n, "norm.weight");
    } else if (n == "output.weight") {
      ws.hide(n);  // the LM head: not used for the hidden states
    } else if (n.rfind("blk.", 0) == 0) {
      const size_t dot = n.find('.', 4);
      if (dot == std::string::npos) continue;
      const std::string idx = n.substr(4, dot - 4), rest = n.substr(dot + 1);
      for (auto& [a, b] : kBlk)
        if (rest == a) ws.alias(n, "layers." + idx + "." + b);
    }
  }
}

WeightStore Qwen3TextEncoder::open_weights(const std::string& dir, const Qwen3Config& c, std::string* prefix,
                                           const std::string& weights_file) {
  return tagged([&] {
    WeightStore ws = weights_file.empty() ? WeightStore::open_dir(dir) : WeightStore::open_file(weights_file);
    convert_llama_cpp_names(ws);
    // Qwen3ForCausalLM checkpoints (the real Z-Image-Turbo text_encoder) nest Qwen3Model under "model.".
    std::string pre;
    if (ws.has("model.embed_tokens.weight"))
      pre = "model.";
    else if (!ws.has("embed_tokens.weight"))
      fail("[text_encoder] ", ws.source(), ": no 'embed_tokens.weight' or 'model.embed_tokens.weight'");
    ws.check(expected_tensors(c, pre));
    if (prefix) *prefix = pre;
    return ws;
  });
}

Qwen3TextEncoder Qwen3TextEncoder::load(const std::string& dir, DType compute, const std::string& weights_file) {
  if (compute != DType::F32 && compute != DType::BF16)
    fail("[text_encoder] compute dtype ", dtype_name(compute), " is not supported (float32 or bfloat16)");
  return load_with_config(Qwen3Config::load((std::filesystem::path(dir) / "config.json").string()), dir, compute,
                          weights_file);
}

Qwen3TextEncoder Qwen3TextEncoder::load_with_config(const Qwen3Config& cfg, const std::string& dir, DType compute,
                                                    const std::string& weights_file) {
  if (compute != DType::F32 && compute != DType::BF16)
    fail("[text_encoder] compute dtype ", dtype_name(compute), " is not supported (float32 or bfloat16)");
  Qwen3TextEncoder m;
  m.cfg_ = cfg;
  m.compute_ = compute;
  m.prec_ = ops::Precision::of(compute, "text_encoder");
  const Qwen3Config& c = m.cfg_;
  std::string pre;
  m.store_ = open_weights(dir, c, &pre, weights_file);
  tagged([&] {
    const weights::Loader w(m.store_, compute, "text_encoder");

    const int64_t H = c.hidden_size, I = c.intermediate_size, D = c.head_dim;
    const int64_t Hq = c.num_attention_heads, Hkv = c.num_key_value_heads;
    if (m.store_.is_quantized(pre + "embed_tokens.weight")) {
      m.embed_q_ = m.store_.quantized(pre + "embed_tokens.weight", {c.vocab_size, H});
      m.embed_quantized_ = true;
    } else {
      m.embed_tokens_ = w.stored(pre + "embed_tokens.weight", {c.vocab_size, H});
    }
    // Norm weights and biases as the model holds them: bf16 in a bf16 run.
    auto vec = [&](const std::string& name, int64_t n) { return w.param(name, {n}); };
    auto lin = [&](const std::string& name, int64_t out, int64_t in) { return w.linear_weight(name, out, in); };
    // hidden_states[-2] is the output of layer num_hidden_layers - 2: the last layer and the
    // final norm never contribute, so they are not loaded.
    for (int64_t i = 0; i + 1 < c.num_hidden_layers; ++i) {
      const std::string p = pre + "layers." + std::to_string(i) + ".";
      Layer l;
      l.input_layernorm = vec(p + "input_layernorm.weight", H);
      l.post_attention_layernorm = vec(p + "post_attention_layernorm.weight", H);
      l.q_proj = lin(p + "self_attn.q_proj.weight", Hq * D, H);
      l.k_proj = lin(p + "self_attn.k_proj.weight", Hkv * D, H);
      l.v_proj = lin(p + "self_attn.v_proj.weight", Hkv * D, H);
      l.o_proj = lin(p + "self_attn.o_proj.weight", H, Hq * D);
      if (c.attention_bias) {
        l.q_proj_bias = vec(p + "self_attn.q_proj.bias", Hq * D);
        l.k_proj_bias = vec(p + "self_attn.k_proj.bias", Hkv * D);
        l.v_proj_bias = vec(p + "self_attn.v_proj.bias", Hkv * D);
        l.o_proj_bias = vec(p + "self_attn.o_proj.bias", H);
      }
      l.q_norm = vec(p + "self_attn.q_norm.weight", D);
      l.k_norm = vec(p + "self_attn.k_norm.weight", D);
      l.gate_proj = lin(p + "mlp.gate_proj.weight", I, H);
      l.up_proj = lin(p + "mlp.up_proj.weight", I, H);
      l.down_proj = lin(p + "mlp.down_proj.weight", H, I);
      m.layers_.push_back(std::move(l));
    }
    return 0;
  });
  return m;
}

// Qwen3RMSNorm: normalise in fp32, cast back to the input dtype, then weight * x (in that dtype).
Tensor Qwen3TextEncoder::norm(const Tensor& x, const Tensor& weight) const {
  return ops::rms_norm(prec_, x, weight, float(cfg_.rms_norm_eps));
}

Tensor Qwen3TextEncoder::embed(const std::vector<int32_t>& ids, int64_t n) const {
  const int64_t H = cfg_.hidden_size;
  for (int64_t i = 0; i < n; ++i)
    if (ids[size_t(i)] < 0 || ids[size_t(i)] >= cfg_.vocab_size)
      fail("[text_encoder] token id ", ids[size_t(i)], " at position ", i, " is out of range [0, ", cfg_.vocab_size,
           ")");
  Tensor x = Tensor::empty(DType::F32, {n, H});  // [S, hidden]
  if (embed_quantized_) {
    for (int64_t i = 0; i < n; ++i) dequantize_row(embed_q_, ids[size_t(i)], x.f32() + i * H);
    ops::store_(prec_, x);
    return x;
  }
  const auto* table = static_cast<const char*>(embed_tokens_.raw());
  const size_t row_bytes = size_t(H) * dtype_size(embed_tokens_.dtype());
  for (int64_t i = 0; i < n; ++i)
    convert(table + size_t(ids[size_t(i)]) * row_bytes, embed_tokens_.dtype(), x.f32() + i * H, DType::F32, size_t(H));
  ops::store_(prec_, x);  // a bf16 model holds a bf16 table (no-op when stored in bf16)
  return x;
}

// Qwen3DecoderLayer.forward on x [S, hidden], in place.
void Qwen3TextEncoder::decoder_layer(Tensor& x, const Layer& l, const Tensor& cos, const Tensor& sin) const {
  const int64_t S = x.dim(0), D = cfg_.head_dim;
  const int64_t Hq = cfg_.num_attention_heads, Hkv = cfg_.num_key_value_heads;
  auto proj = [&](const Tensor& in, const weights::LinearWeight& w, const Tensor& b) {
    Tensor y = weights::linear(in, w, cfg_.attention_bias ? &b : nullptr);
    ops::store_(prec_, y);
    return y;
  };

  // Self attention (Qwen3Attention).
  Tensor h = norm(x, l.input_layernorm);
  Tensor q = proj(h, l.q_proj, l.q_proj_bias).reshape({1, S, Hq, D});   // [B, S, Hq, D]
  Tensor k = proj(h, l.k_proj, l.k_proj_bias).reshape({1, S, Hkv, D});  // [B, S, Hkv, D]
  Tensor v = proj(h, l.v_proj, l.v_proj_bias).reshape({1, S, Hkv, D});  // [B, S, Hkv, D]
  q = norm(q, l.q_norm);                                                // per head, over head_dim, before RoPE
  k = norm(k, l.k_norm);
  ops::rope_rotate_half_(prec_, q, cos, sin);
  ops::rope_rotate_half_(prec_, k, cos, sin);
  const float scale = float(1.0 / std::sqrt(double(D)));
  // transformers' sdpa path; in a bf16 run that is torch's CPU flash kernel on bf16 tensors.
  Tensor a = ops::attention(prec_, q, k, v, scale, /*causal=*/true);  // [B, S, Hq, D]
  Tensor o = proj(a.reshape({S, Hq * D}), l.o_proj, l.o_proj_bias);   // [S, hidden]
  ops::add_(x, o);
  ops::store_(prec_, x);

  // MLP (Qwen3MLP): down(silu(gate(x)) * up(x)).
  h = norm(x, l.post_attention_layernorm);
  Tensor g = weights::linear(h, l.gate_proj);
  Tensor u = weights::linear(h, l.up_proj);
  ops::store_(prec_, g);
  ops::store_(prec_, u);
  ops::silu_(g);  // act_fn(gate), stored; then * up (f32: the same bits as ops::silu_mul)
  ops::store_(prec_, g);
  mul_(g, u);
  ops::store_(prec_, g);
  Tensor d = weights::linear(g, l.down_proj);
  ops::store_(prec_, d);
  ops::add_(x, d);
  ops::store_(prec_, x);
}

Tensor Qwen3TextEncoder::encode(const std::vector<int32_t>& ids, int64_t num_real) const {
  if (num_real < 0 || num_real > int64_t(ids.size()))
    fail("[text_encoder] num_real = ", num_real, " is outside [0, ", ids.size(), "] (the number of token ids)");
  const int64_t S = num_real;
  Tensor x = embed(ids, S);  // [S, hidden]
  if (S == 0) return x;
  Tensor cos, sin;
  rotary_embedding(S, cfg_.head_dim, cfg_.rope_theta, prec_, cos, sin);
  for (const Layer& l : layers_) decoder_layer(x, l, cos, sin);
  return x;
}

Tensor Qwen3TextEncoder::encode_masked(const std::vector<int32_t>& ids, const std::vector<int32_t>& mask) const {
  if (mask.size() != ids.size())
    fail("[text_encoder] attention mask has ", mask.size(), " entries for ", ids.size(), " token ids");
  int64_t n = 0;
  while (n < int64_t(mask.size()) && mask[size_t(n)] != 0) ++n;
  for (size_t i = size_t(n); i < mask.size(); ++i)
    if (mask[i] != 0)
      fail("[text_encoder] attention mask is not right-padded: position ", i, " is ", mask[i],
           " after a 0 at position ", n);
  return encode(ids, n);
}

std::vector<Tensor> Qwen3TextEncoder::encode_batch(const std::vector<std::vector<int32_t>>& ids,
                                                   const std::vector<int64_t>& num_real) const {
  if (ids.size() != num_real.size()) fail("[text_encoder] ", ids.size(), " prompts but ", num_real.size(), " lengths");
  std::vector<Tensor> out;
  out.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) out.push_back(encode(ids[i], num_real[i]));
  return out;
}

}  // namespace zimage
