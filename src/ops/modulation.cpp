// Elementwise pieces of adaLN-modulated transformer blocks (scale, gate-add, SwiGLU, RMSNorm),
// each with an optional emulation of torch's bf16 storage: with storage == BF16 every tensor
// torch would materialise is rounded to bf16, intermediate by intermediate.
#include <cmath>

#include "ops/ops.h"

namespace zimage::ops {

namespace {

inline float store(float v, bool bf16) { return bf16 ? round_bf16(v) : v; }

// Row ranges of the items: item b owns rows [off[b], off[b+1]).
std::vector<int64_t> item_offsets(const char* op, const std::vector<int64_t>& rows, int64_t T, int64_t B) {
  if (int64_t(rows.size()) != B) fail("[", op, "] ", rows.size(), " row counts for ", B, " items");
  std::vector<int64_t> off(rows.size() + 1, 0);
  for (size_t b = 0; b < rows.size(); ++b) {
    if (rows[b] < 0) fail("[", op, "] negative row count ", rows[b]);
    off[b + 1] = off[b] + rows[b];
  }
  if (off.back() != T) fail("[", op, "] row counts sum to ", off.back(), " but x has ", T, " rows");
  return off;
}

void check_storage(const char* op, DType storage) {
  if (storage != DType::F32 && storage != DType::BF16)
    fail("[", op, "] storage must be float32 or bfloat16, got ", dtype_name(storage));
}

}  // namespace

Tensor modulate(const Tensor& x, const Tensor& scale, const std::vector<int64_t>& rows, DType storage) {
  check_storage("modulate", storage);
  if (x.ndim() != 2 || scale.ndim() != 2 || x.dim(1) != scale.dim(1))
    fail("[modulate] x ", shape_str(x.shape()), " and scale ", shape_str(scale.shape()), " disagree");
  const int64_t N = x.dim(1);
  const auto off = item_offsets("modulate", rows, x.dim(0), scale.dim(0));
  const bool bf = storage == DType::BF16;
  Tensor y = Tensor::empty(DType::F32, x.shape());
  const float* xp = x.f32();
  const float* sp = scale.f32();
  float* yp = y.f32();
  for (size_t b = 0; b + 1 < off.size(); ++b) {
    const float* s = sp + int64_t(b) * N;
#pragma omp parallel for schedule(static)
    for (int64_t r = off[b]; r < off[b + 1]; ++r)
      for (int64_t i = 0; i < N; ++i) yp[r * N + i] = store(xp[r * N + i] * s[i], bf);
  }
  return y;
}

void gate_add_(Tensor& x, const Tensor& gate, const Tensor& y, const std::vector<int64_t>& rows, DType storage) {
  check_storage("gate_add", storage);
  if (x.ndim() != 2 || y.shape() != x.shape())
    fail("[gate_add] x ", shape_str(x.shape()), " and y ", shape_str(y.shape()), " disagree");
  const int64_t N = x.dim(1);
  const bool has_gate = gate.defined() && gate.numel() > 0;
  if (has_gate && (gate.ndim() != 2 || gate.dim(1) != N))
    fail("[gate_add] gate ", shape_str(gate.shape()), " does not match x ", shape_str(x.shape()));
  const auto off = item_offsets("gate_add", rows, x.dim(0), has_gate ? gate.dim(0) : int64_t(rows.size()));
  const bool bf = storage == DType::BF16;
  float* xp = x.f32();
  const float* yp = y.f32();
  const float* gp = has_gate ? gate.f32() : nullptr;
  for (size_t b = 0; b + 1 < off.size(); ++b) {
    const float* g = has_gate ? gp + int64_t(b) * N : nullptr;
#pragma omp parallel for schedule(static)
    for (int64_t r = off[b]; r < off[b + 1]; ++r)
      for (int64_t i = 0; i < N; ++i) {
        const float d = g ? store(g[i] * yp[r * N + i], bf) : yp[r * N + i];
        xp[r * N + i] = store(xp[r * N + i] + d, bf);
      }
  }
}

Tensor silu_mul_as(const Tensor& a, const Tensor& b, DType storage) {
  check_storage("silu_mul", storage);
  if (storage == DType::F32) return silu_mul(a, b);
  if (a.shape() != b.shape()) fail("[silu_mul] shapes ", shape_str(a.shape()), " and ", shape_str(b.shape()), " differ");
  Tensor y = Tensor::empty(DType::F32, a.shape());
  const float* ap = a.f32();
  const float* bp = b.f32();
  float* yp = y.f32();
  const int64_t n = a.numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) yp[i] = round_bf16(round_bf16(ap[i] / (1.f + std::exp(-ap[i]))) * bp[i]);
  return y;
}

Tensor rms_norm_as(const Tensor& x, const Tensor& weight, float eps, DType storage) {
  check_storage("rms_norm", storage);
  if (storage == DType::F32) return rms_norm(x, weight, eps);
  // torch (bf16 input, bf16 weight): bf16(x * rsqrt(mean(x^2) + eps)) * weight, rounded again.
  Tensor y = rms_norm(x, Tensor(), eps);
  round_to_bf16_(y);
  if (weight.defined() && weight.numel() > 0) {
    const int64_t dim = x.dim(-1), rows = dim ? x.numel() / dim : 0;
    if (weight.numel() != dim) fail("[rms_norm] weight has ", weight.numel(), " elements, input last dim is ", dim);
    const std::vector<float> w = weight.to_vector();
    float* yp = y.f32();
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < dim; ++i) yp[r * dim + i] = round_bf16(yp[r * dim + i] * w[size_t(i)]);
  }
  return y;
}

}  // namespace zimage::ops
