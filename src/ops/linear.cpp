#include <omp.h>

#include <vector>

#include "backend/cpu/cpu_level.h"
#include "backend/cpu/gemm.h"
#include "backend/cpu/kernels.h"
#include "ops/attention_args.h"
#include "ops/backend.h"
#include "ops/ops.h"

namespace zimage::ops {

const char* cpu_kernel_level() { return cpu::level_name(cpu::kernels().level); }

void set_num_threads(int n) { omp_set_num_threads(n > 0 ? n : omp_get_num_procs()); }
int num_threads() { return omp_get_max_threads(); }

Tensor prepare_weight(const Tensor& w, DType compute) {
  if (compute == DType::BF16) return w.to(DType::BF16);
  return w.to(DType::F32);
}

namespace {

// Validates x [..., K] · w[N, K]^T (+ bias[N]) and returns M.
int64_t check_linear(const Tensor& x, const Tensor& w, const Tensor* bias) {
  if (w.ndim() != 2) fail("[linear] weight must have 2 dimensions but has shape ", shape_str(w.shape()));
  if (x.dtype() != DType::F32 && !(x.dtype() == DType::BF16 && w.dtype() == DType::BF16))
    fail("[linear] input must be float32 (or bfloat16 with bfloat16 weights), got ", dtype_name(x.dtype()), " with ",
         dtype_name(w.dtype()), " weights");
  const int64_t N = w.dim(0), K = w.dim(1);
  if (x.ndim() < 1 || x.dim(-1) != K)
    fail("[linear] input shape ", shape_str(x.shape()), " does not end in ", K, " (weight ", shape_str(w.shape()), ")");
  if (bias && bias->numel() != N) fail("[linear] bias has ", bias->numel(), " elements, expected ", N);
  return K ? x.numel() / K : 0;
}

void linear_impl(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  const int64_t M = check_linear(x, w, bias), N = w.dim(0), K = w.dim(1);
  Tensor b32;
  if (bias) b32 = bias->to(DType::F32);
  const float* bp = bias ? b32.f32() : nullptr;
  if (w.dtype() == DType::BF16) {
    const Tensor xb = x.to(DType::BF16);  // shared (no copy) when x is already bf16
    cpu::gemm_nt_ex(M, N, K, xb.raw(), K, w.raw(), DType::BF16, bp, y.raw(), N, y.dtype());
  } else {
    ZI_ASSERT(y.dtype() == DType::F32);
    Tensor w32 = w.to(DType::F32);
    cpu::gemm_nt(M, N, K, x.raw(), w32.raw(), DType::F32, bp, y.f32());
  }
}

}  // namespace

Tensor linear(const Tensor& x, const Tensor& w, const Tensor* bias) {
  ZI_DEVICE_OP(x, linear, x, w, bias);
  check_linear(x, w, bias);
  Shape out_shape = x.shape();
  out_shape.back() = w.dim(0);
  Tensor y = Tensor::empty(DType::F32, out_shape);
  linear_impl(x, w, bias, y);
  return y;
}

void linear_into(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  ZI_DEVICE_OP(x, linear_into, x, w, bias, y);
  const int64_t M = check_linear(x, w, bias);
  if (y.numel() != M * w.dim(0) || y.read_only())
    fail("[linear] output ", shape_str(y.shape()), " does not hold ", M, " x ", w.dim(0), " results");
  if (y.dtype() != DType::F32 && !(y.dtype() == DType::BF16 && w.dtype() == DType::BF16))
    fail("[linear] output dtype ", dtype_name(y.dtype()), " needs bfloat16 weights");
  linear_impl(x, w, bias, y);
}

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, bool causal,
                 const std::vector<int64_t>& key_valid) {
  ZI_DEVICE_OP(q, attention, q, k, v, scale, causal, key_valid);
  check_attention_args("attention", q, k, v, key_valid);
  const int64_t B = q.dim(0), Sq = q.dim(1), Hq = q.dim(2), D = q.dim(3);
  const int64_t Sk = k.dim(1), Hkv = k.dim(2);
  Tensor out = Tensor::empty(DType::F32, {B, Sq, Hq, D});
  cpu::attention(q.f32(), k.f32(), v.f32(), out.f32(), B, Sq, Sk, Hq, Hkv, D, scale, causal,
                 key_valid.empty() ? nullptr : key_valid.data());
  return out;
}

}  // namespace zimage::ops
