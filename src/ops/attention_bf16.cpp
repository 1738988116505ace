#include "backend/cpu/kernels.h"
#include "ops/ops.h"

namespace zimage::ops {

Tensor attention_torch_bf16(const Tensor& q, const Tensor& k, const Tensor& v, float scale, bool causal,
                            const std::vector<int64_t>& key_valid) {
  auto chk4 = [](const Tensor& t, const char* n) {
    if (t.ndim() != 4 || t.dtype() != DType::F32)
      fail("[attention_torch_bf16] ", n, " must be a float32 [B, S, H, D] tensor, got ", dtype_name(t.dtype()), " ",
           shape_str(t.shape()));
  };
  chk4(q, "q");
  chk4(k, "k");
  chk4(v, "v");
  const int64_t B = q.dim(0), Sq = q.dim(1), Hq = q.dim(2), D = q.dim(3);
  const int64_t Sk = k.dim(1), Hkv = k.dim(2);
  if (k.shape() != v.shape())
    fail("[attention_torch_bf16] k ", shape_str(k.shape()), " and v ", shape_str(v.shape()), " differ");
  if (k.dim(0) != B || k.dim(3) != D)
    fail("[attention_torch_bf16] q ", shape_str(q.shape()), " and k ", shape_str(k.shape()), " disagree");
  if (Hkv == 0 || Hq % Hkv != 0)
    fail("[attention_torch_bf16] query heads ", Hq, " not a multiple of kv heads ", Hkv);
  if (!key_valid.empty() && int64_t(key_valid.size()) != B)
    fail("[attention_torch_bf16] key_valid has ", key_valid.size(), " entries for batch ", B);
  Tensor out = Tensor::empty(DType::F32, {B, Sq, Hq, D});
  cpu::attention_torch_bf16(q.f32(), k.f32(), v.f32(), out.f32(), B, Sq, Sk, Hq, Hkv, D, scale, causal,
                            key_valid.empty() ? nullptr : key_valid.data());
  return out;
}

}  // namespace zimage::ops
