// Elementwise pieces of adaLN-modulated transformer blocks (scale, gate-add, SwiGLU, RMSNorm),
// each with an optional emulation of torch's bf16 storage: with storage == BF16 every tensor
// torch would materialise is rounded to bf16, intermediate by intermediate.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/cpu_level.h"
#include "backend/cpu/kernels.h"
#include "ops/backend.h"
#include "ops/ops.h"
#include "ops/row_kernels.h"

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

// The bf16 SwiGLU on one chunk: y = bf16(bf16(silu(a)) * b) for bf16-valued a, b (n <= kSiluChunk),
// silu(a) = a / (1 + exp(-a)) with the backend's vectorised exp (within ~1 ulp of std::exp).
constexpr int64_t kSiluChunk = 1024;
// GCC 12 reports e as maybe uninitialized where its address goes to exp_f32's const input: it
// cannot see that exp_f32 reads only the n elements the loop just wrote (-Wmaybe-uninitialized on
// const pointer arguments, GCC 11+).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
void silu_mul_bf16_chunk(const float* a, const float* b, float* y, int64_t n, const cpu::Kernels& K) {
  float e[kSiluChunk];
  for (int64_t i = 0; i < n; ++i) e[i] = -a[i];
  K.exp_f32(e, e, n);
  K.silu_mul_row_bf16(a, b, e, y, n);
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

void check_storage(const char* op, DType storage) {
  if (storage != DType::F32 && storage != DType::BF16)
    fail("[", op, "] storage must be float32 or bfloat16, got ", dtype_name(storage));
}

}  // namespace

Tensor modulate(const Tensor& x, const Tensor& scale, const std::vector<int64_t>& rows, DType storage) {
  ZI_DEVICE_OP(x, modulate, x, scale, rows, storage);
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
  ZI_DEVICE_OP(x, gate_add_, x, gate, y, rows, storage);
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

std::array<Tensor, 4> adaln_chunks(const Tensor& mod, DType storage) {
  ZI_DEVICE_OP(mod, adaln_chunks, mod, storage);
  check_storage("adaln_chunks", storage);
  if (mod.ndim() != 2 || mod.dtype() != DType::F32 || mod.dim(1) % 4 != 0)
    fail("[adaln_chunks] expected a float32 [B, 4 * N] tensor, got ", dtype_name(mod.dtype()), " ",
         shape_str(mod.shape()));
  const bool bf = storage == DType::BF16;
  const int64_t B = mod.dim(0), N = mod.dim(1) / 4;
  std::array<Tensor, 4> c;
  for (auto& t : c) t = Tensor::empty(DType::F32, {B, N});
  float* scale_msa = c[0].f32();
  float* gate_msa = c[1].f32();
  float* scale_mlp = c[2].f32();
  float* gate_mlp = c[3].f32();
  for (int64_t b = 0; b < B; ++b) {
    const float* m = mod.f32() + b * 4 * N;
    for (int64_t i = 0; i < N; ++i) {
      scale_msa[b * N + i] = store(1.f + m[i], bf);
      gate_msa[b * N + i] = store(std::tanh(m[N + i]), bf);
      scale_mlp[b * N + i] = store(1.f + m[2 * N + i], bf);
      gate_mlp[b * N + i] = store(std::tanh(m[3 * N + i]), bf);
    }
  }
  return c;
}

Tensor silu_mul_as(const Tensor& a, const Tensor& b, DType storage) {
  ZI_DEVICE_OP(a, silu_mul_as, a, b, storage);
  check_storage("silu_mul", storage);
  if (storage == DType::F32) return silu_mul(a, b);
  if (a.shape() != b.shape())
    fail("[silu_mul] shapes ", shape_str(a.shape()), " and ", shape_str(b.shape()), " differ");
  Tensor y = Tensor::empty(DType::F32, a.shape());
  const float* ap = a.f32();
  const float* bp = b.f32();
  float* yp = y.f32();
  const int64_t n = a.numel();
  const cpu::Kernels& K = cpu::kernels();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i += kSiluChunk)
    silu_mul_bf16_chunk(ap + i, bp + i, yp + i, std::min(kSiluChunk, n - i), K);
  return y;
}

Tensor rms_norm_as(const Tensor& x, const Tensor& weight, float eps, DType storage) {
  ZI_DEVICE_OP(x, rms_norm_as, x, weight, eps, storage);
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

// ---- Fused bf16-storage passes (one read and one write per tensor; same arithmetic as the
// composition of the ops above with storage == BF16, checked bit for bit by the op tests). ----

namespace {

// Row r of x as f32: the row itself for f32 tensors, else converted into buf (n floats).
const float* row_f32(const Tensor& x, int64_t r, int64_t n, float* buf) {
  if (x.dtype() == DType::F32) return x.f32() + r * n;
  convert(static_cast<const uint16_t*>(x.raw()) + r * n, x.dtype(), buf, DType::F32, size_t(n));
  return buf;
}

// Row r of x rounded to bf16 values, in buf (n floats).
const float* row_bf16_values(const Tensor& x, int64_t r, int64_t n, float* buf, const cpu::Kernels& K) {
  if (x.dtype() != DType::F32) return row_f32(x, r, n, buf);
  K.round_row_bf16(x.f32() + r * n, buf, n);
  return buf;
}

void check_rows_2d(const char* op, const Tensor& x, int64_t N) {
  if (x.ndim() != 2 || x.dim(1) != N || (x.dtype() != DType::F32 && x.dtype() != DType::BF16))
    fail("[", op, "] expected a float32 or bfloat16 [T, ", N, "] tensor, got ", dtype_name(x.dtype()), " ",
         shape_str(x.shape()));
}

std::vector<float> affine(const char* op, const Tensor& w, int64_t N) {
  if (!w.defined() || w.numel() == 0) return {};
  if (w.numel() != N) fail("[", op, "] weight has ", w.numel(), " elements, expected ", N);
  return w.to_vector();
}

// Item index of every row (rows grouped by item, see modulate).
std::vector<int32_t> row_items(const std::vector<int64_t>& off) {
  std::vector<int32_t> item(size_t(off.back()));
  for (size_t b = 0; b + 1 < off.size(); ++b)
    for (int64_t r = off[b]; r < off[b + 1]; ++r) item[size_t(r)] = int32_t(b);
  return item;
}

}  // namespace

void rms_norm_modulate_bf16(const Tensor& x, const Tensor& weight, const Tensor& scale,
                            const std::vector<int64_t>& rows, float eps, Tensor& out) {
  ZI_DEVICE_OP(x, rms_norm_modulate_bf16, x, weight, scale, rows, eps, out);
  const int64_t N = x.dim(-1), T = x.ndim() == 2 ? x.dim(0) : 0;
  check_rows_2d("rms_norm_modulate", x, N);
  if (out.dtype() != DType::BF16 || out.shape() != x.shape() || out.read_only())
    fail("[rms_norm_modulate] output must be a writable bfloat16 ", shape_str(x.shape()), " tensor");
  const bool has_scale = scale.defined() && scale.numel() > 0;
  if (has_scale && (scale.ndim() != 2 || scale.dim(1) != N || scale.dtype() != DType::F32))
    fail("[rms_norm_modulate] scale ", shape_str(scale.shape()), " does not match x ", shape_str(x.shape()));
  const auto off = item_offsets("rms_norm_modulate", rows, T, has_scale ? scale.dim(0) : int64_t(rows.size()));
  const auto item = row_items(off);
  const std::vector<float> w = affine("rms_norm_modulate", weight, N);
  uint16_t* op = static_cast<uint16_t*>(out.raw());
  const cpu::Kernels& K = cpu::kernels();
  const float* wp = w.empty() ? nullptr : w.data();
#pragma omp parallel
  {
    std::vector<float> buf(static_cast<size_t>(N));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < T; ++r) {
      const float* xr = row_f32(x, r, N, buf.data());
      const float inv = detail::rms_inv(xr, N, eps);
      const float* s = has_scale ? scale.f32() + int64_t(item[size_t(r)]) * N : nullptr;
      K.modulate_row_bf16(xr, N, inv, wp, s, op + r * N);
    }
  }
}

void rms_norm_gate_add_bf16_(Tensor& x, const Tensor& gate, const Tensor& y, const Tensor& weight,
                             const std::vector<int64_t>& rows, float eps) {
  ZI_DEVICE_OP(x, rms_norm_gate_add_bf16_, x, gate, y, weight, rows, eps);
  if (x.ndim() != 2 || x.dtype() != DType::F32 || x.read_only())
    fail("[rms_norm_gate_add] x must be a writable float32 [T, N] tensor, got ", dtype_name(x.dtype()), " ",
         shape_str(x.shape()));
  const int64_t T = x.dim(0), N = x.dim(1);
  check_rows_2d("rms_norm_gate_add", y, N);
  if (y.dim(0) != T) fail("[rms_norm_gate_add] x ", shape_str(x.shape()), " and y ", shape_str(y.shape()), " disagree");
  const bool has_gate = gate.defined() && gate.numel() > 0;
  if (has_gate && (gate.ndim() != 2 || gate.dim(1) != N || gate.dtype() != DType::F32))
    fail("[rms_norm_gate_add] gate ", shape_str(gate.shape()), " does not match x ", shape_str(x.shape()));
  const auto off = item_offsets("rms_norm_gate_add", rows, T, has_gate ? gate.dim(0) : int64_t(rows.size()));
  const auto item = row_items(off);
  const std::vector<float> w = affine("rms_norm_gate_add", weight, N);
  float* xp = x.f32();
  const cpu::Kernels& K = cpu::kernels();
  const float* wp = w.empty() ? nullptr : w.data();
#pragma omp parallel
  {
    std::vector<float> buf(static_cast<size_t>(N));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < T; ++r) {
      const float* yr = row_bf16_values(y, r, N, buf.data(), K);
      const float inv = detail::rms_inv(yr, N, eps);
      const float* g = has_gate ? gate.f32() + int64_t(item[size_t(r)]) * N : nullptr;
      K.gate_add_row_bf16(yr, N, inv, wp, g, xp + r * N);
    }
  }
}

void head_norm_rope_bf16_(Tensor& x, const Tensor& weight, const Tensor& cs, float eps) {
  ZI_DEVICE_OP(x, head_norm_rope_bf16_, x, weight, cs, eps);
  if (x.ndim() != 3 || x.dtype() != DType::F32 || x.read_only())
    fail("[head_norm_rope] x must be a writable float32 [T, H, D] tensor, got ", dtype_name(x.dtype()), " ",
         shape_str(x.shape()));
  const int64_t T = x.dim(0), H = x.dim(1), D = x.dim(2);
  const bool rope = cs.defined() && cs.numel() > 0;
  if (rope && (D % 2 != 0 || cs.dtype() != DType::F32 || cs.shape() != Shape{T, D / 2, 2}))
    fail("[head_norm_rope] cos/sin table must be float32 ", shape_str({T, D / 2, 2}), ", got ", dtype_name(cs.dtype()),
         " ", shape_str(cs.shape()));
  const std::vector<float> w = affine("head_norm_rope", weight, D);
  float* xp = x.f32();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h) {
      float* v = xp + (t * H + h) * D;
      for (int64_t i = 0; i < D; ++i) v[i] = round_bf16(v[i]);
      if (!w.empty()) {
        const float inv = detail::rms_inv(v, D, eps);
        for (int64_t i = 0; i < D; ++i) v[i] = round_bf16(round_bf16(v[i] * inv) * w[size_t(i)]);
      }
      if (rope) {
        detail::rope_pairs(v, cs.f32() + t * D, D);
        for (int64_t i = 0; i < D; ++i) v[i] = round_bf16(v[i]);
      }
    }
}

void silu_mul_bf16(const Tensor& a, const Tensor& b, Tensor& out) {
  ZI_DEVICE_OP(a, silu_mul_bf16, a, b, out);
  auto ok = [](const Tensor& t) { return t.dtype() == DType::F32 || t.dtype() == DType::BF16; };
  if (!ok(a) || !ok(b) || a.shape() != b.shape() || out.dtype() != DType::BF16 || out.numel() != a.numel() ||
      out.read_only())
    fail("[silu_mul] expected two float32/bfloat16 tensors of one shape and a bfloat16 output, got ",
         dtype_name(a.dtype()), " ", shape_str(a.shape()), ", ", dtype_name(b.dtype()), " ", shape_str(b.shape()),
         " and ", dtype_name(out.dtype()), " ", shape_str(out.shape()));
  // Chunk [i, i + m) of t as bf16 values.
  const cpu::Kernels& K = cpu::kernels();
  auto load = [&K](const Tensor& t, int64_t i, int64_t m, float* dst) {
    if (t.dtype() == DType::F32)
      K.round_row_bf16(t.f32() + i, dst, m);
    else
      convert(static_cast<const uint16_t*>(t.raw()) + i, DType::BF16, dst, DType::F32, size_t(m));
  };
  uint16_t* op = static_cast<uint16_t*>(out.raw());
  const int64_t n = a.numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i += kSiluChunk) {
    float av[kSiluChunk], bv[kSiluChunk];
    const int64_t m = std::min(kSiluChunk, n - i);
    load(a, i, m, av);
    load(b, i, m, bv);
    silu_mul_bf16_chunk(av, bv, av, m, K);
    convert(av, DType::F32, op + i, DType::BF16, size_t(m));  // exact: bf16 values
  }
}

}  // namespace zimage::ops
