#include "backend/cpu/kernels.h"
#include "ops/attention_args.h"
#include "ops/backend.h"
#include "ops/ops.h"

namespace zimage::ops {

Tensor attention_torch_bf16(const Tensor& q, const Tensor& k, const Tensor& v, float scale, bool causal,
                            const std::vector<int64_t>& key_valid) {
  ZI_DEVICE_OP(q, attention_torch_bf16, q, k, v, scale, causal, key_valid);
  check_attention_args("attention_torch_bf16", q, k, v, key_valid);
  const int64_t B = q.dim(0), Sq = q.dim(1), Hq = q.dim(2), D = q.dim(3);
  const int64_t Sk = k.dim(1), Hkv = k.dim(2);
  Tensor out = Tensor::empty(DType::F32, {B, Sq, Hq, D});
  cpu::attention_torch_bf16(q.f32(), k.f32(), v.f32(), out.f32(), B, Sq, Sk, Hq, Hkv, D, scale, causal,
                            key_valid.empty() ? nullptr : key_valid.data());
  return out;
}

}  // namespace zimage::ops
