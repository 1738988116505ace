#include "weights/loader.h"

#include "ops/ops.h"

namespace zimage::weights {

Loader::~Loader() {
  if (used_ && used_.use_count() == 1) prefetch::enqueue(component_, std::move(*used_));
}

void Loader::record(const std::string& name, const void* data, size_t bytes, bool map) const {
  if (!used_ || bytes == 0) return;
  try {
    used_->push_back(prefetch::Range{store_.mapping(name), data, bytes, map});
  } catch (...) {
    // prefetch is an optimisation: a weight it does not know is read when the forward uses it
  }
}

Tensor Loader::stored(const std::string& name, const Shape& shape) const {
  return with_component(component_.c_str(), [&] { return store_.get(name, shape); });
}

Tensor Loader::linear(const std::string& name, int64_t out, int64_t in) const {
  if (lora_ && lora_->find(name)) {  // W + scale * alpha / rank * B @ A in float32, then the compute dtype
    Tensor w = stored(name, {out, in}).to(DType::F32).clone();
    lora_->merge_into(name, w);
    return place(ops::prepare_weight(w, compute_));
  }
  Tensor s = stored(name, {out, in});
  Tensor w = ops::prepare_weight(s, compute_);
  if (w.raw() == s.raw() && s.read_only()) record(name, s.raw(), s.nbytes());  // a view of the mapping
  return place(w);
}

Tensor Loader::place(const Tensor& t) const {
  if (device_ == Device::CPU) return t;
  return with_component(component_.c_str(), [&] { return t.to(device_); });
}

LinearWeight Loader::linear_weight(const std::string& name, int64_t out, int64_t in) const {
  LinearWeight w;
  if (slots_) {
    w.lora = std::make_shared<LoraSlot>();
    w.lora->compute = compute_;
    (*slots_)[name] = w.lora;
  }
  // fp8 with a LoRA to merge: upcast (get() does it, with the scale) and merge like a dense weight.
  if (!store_.is_quantized(name) || (store_.is_fp8(name) && lora_ && lora_->find(name))) {
    w.dense = linear(name, out, in);
    return w;
  }
  if (lora_ && lora_->find(name)) {  // merging would requantize: the LoRA runs as a branch
    if (!w.lora)
      fail("[", component_, "] ", name, " is quantized (", store_.info(name).dtype,
           "): a LoRA cannot be merged into it (use a non-quantized file with --lora)");
    lora_->attach_to(name, *w.lora);
  }
  if (device_ != Device::CPU)
    fail("[", component_, "] ", name, " is quantized (", store_.info(name).dtype,
         "): only the CPU takes quantized weights, not ", device_name(device_),
         " (use a non-quantized transformer file)");
  QuantizedTensor q = with_component(component_.c_str(), [&] { return store_.quantized(name, {out, in}); });
  auto m = std::make_shared<ops::QuantizedMatrix>();
  m->ggml_type = q.ggml_type;
  m->rows = out;
  m->cols = in;
  m->data = q.data;
  m->row_bytes = out ? q.nbytes / size_t(out) : 0;
  m->keepalive = q.keepalive;
  m->compute = compute_;
  m->scale = std::move(q.scale);
  record(name, q.data, q.nbytes, /*map=*/false);  // packed (or dequantized) from the page cache
  w.quantized = std::move(m);
  return w;
}

Tensor linear(const Tensor& x, const LinearWeight& w, const Tensor* bias) {
  Tensor y = w.quantized ? ops::linear(x, *w.quantized, bias) : ops::linear(x, w.dense, bias);
  if (w.lora && !w.lora->branches.empty()) apply_lora(x, *w.lora, y);
  return y;
}

void linear_into(const Tensor& x, const LinearWeight& w, const Tensor* bias, Tensor& y) {
  if (w.quantized)
    ops::linear_into(x, *w.quantized, bias, y);
  else
    ops::linear_into(x, w.dense, bias, y);
  if (w.lora && !w.lora->branches.empty()) apply_lora(x, *w.lora, y);
}

Tensor Loader::conv(const std::string& name, const Shape& shape) const {
  Tensor s = stored(name, shape);
  Tensor w = ops::prepare_conv_weight(s, compute_);
  if (w.raw() == s.raw() && s.read_only()) record(name, s.raw(), s.nbytes());
  return place(w);
}

Tensor Loader::f32(const std::string& name, const Shape& shape) const {
  return place(stored(name, shape).to(DType::F32));
}

Tensor Loader::param(const std::string& name, const Shape& shape) const {
  Tensor t = stored(name, shape);
  if (compute_ == DType::BF16) return place(t.to(DType::BF16).to(DType::F32));
  return place(t.to(DType::F32).clone());
}

}  // namespace zimage::weights
