// Argument checks shared by the attention ops (ops::attention, ops::attention_torch_bf16).
#pragma once
#include <vector>

#include "core/tensor.h"

namespace zimage::ops {

// q: [B, Sq, Hq, D]; k, v: [B, Sk, Hkv, D] float32 with Hq % Hkv == 0; key_valid empty or [B].
inline void check_attention_args(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                                 const std::vector<int64_t>& key_valid) {
  for (auto [t, n] : {std::pair<const Tensor*, const char*>{&q, "q"}, {&k, "k"}, {&v, "v"}})
    if (t->ndim() != 4 || t->dtype() != DType::F32)
      fail("[", op, "] ", n, " must be a float32 [B, S, H, D] tensor, got ", dtype_name(t->dtype()), " ",
           shape_str(t->shape()));
  const int64_t B = q.dim(0), Hq = q.dim(2), D = q.dim(3), Hkv = k.dim(2);
  if (k.shape() != v.shape()) fail("[", op, "] k ", shape_str(k.shape()), " and v ", shape_str(v.shape()), " differ");
  if (k.dim(0) != B || k.dim(3) != D)
    fail("[", op, "] q ", shape_str(q.shape()), " and k ", shape_str(k.shape()), " disagree");
  if (Hkv == 0 || Hq % Hkv != 0) fail("[", op, "] query heads ", Hq, " not a multiple of kv heads ", Hkv);
  if (!key_valid.empty() && int64_t(key_valid.size()) != B)
    fail("[", op, "] key_valid has ", key_valid.size(), " entries for batch ", B);
}

}  // namespace zimage::ops
