// attention(): shape checks and the choice between the flash and the native kernel.
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "backend/cuda/attention_internal.h"
#include "backend/cuda/common.cuh"
#include "backend/cuda/context.h"

namespace zimage::cuda {

namespace {
bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// ZIMAGE_CUDA_FLASH_NO_LDMATRIX=1 selects the flash kernel's plain-load fragment path.
std::atomic<bool>& flash_ldmatrix_flag() {
  static std::atomic<bool> on{[] {
    const char* v = std::getenv("ZIMAGE_CUDA_FLASH_NO_LDMATRIX");
    return !(v && std::strcmp(v, "1") == 0);
  }()};
  return on;
}
bool flash_use_ldmatrix() { return flash_ldmatrix_flag().load(); }
}  // namespace

void set_flash_use_ldmatrix(bool on) { flash_ldmatrix_flag().store(on); }

DeviceTensor attention(const DeviceTensor& q, const DeviceTensor& k, const DeviceTensor& v, float scale, bool causal,
                       const std::vector<int64_t>& key_valid, AttentionBackend backend) {
  if (q.ndim() != 4 || k.ndim() != 4 || v.ndim() != 4 || k.shape() != v.shape() || q.dim(0) != k.dim(0) ||
      q.dim(3) != k.dim(3) || k.dim(2) == 0 || q.dim(2) % k.dim(2) != 0)
    fail("[attention] q ", shape_str(q.shape()), ", k ", shape_str(k.shape()), ", v ", shape_str(v.shape()),
         " are not [B, Sq, Hq, D], [B, Sk, Hkv, D] with Hq % Hkv == 0");
  if (q.dtype() != k.dtype() || q.dtype() != v.dtype())
    fail("[attention] q, k, v dtypes differ: ", dtype_name(q.dtype()), ", ", dtype_name(k.dtype()), ", ",
         dtype_name(v.dtype()));
  const int64_t B = q.dim(0), Sq = q.dim(1), Sk = k.dim(1), Hq = q.dim(2), Hkv = k.dim(2), D = q.dim(3);
  if (!key_valid.empty() && int64_t(key_valid.size()) != B)
    fail("[attention] ", key_valid.size(), " key lengths for batch ", B);
  if (Hq > 65535 || Sq > int64_t(1) << 30) fail("[attention] ", Hq, " heads x ", Sq, " queries is too large");

  const bool flash_ok =
      q.dtype() == DType::BF16 && D == 128 && aligned16(q.data()) && aligned16(k.data()) && aligned16(v.data());
  bool flash = false;
  switch (backend) {
    case AttentionBackend::Flash:
      if (!flash_ok)
        fail("[attention] the flash kernel needs bfloat16 q/k/v with head dim 128 (16-byte aligned), got ",
             dtype_name(q.dtype()), " head dim ", D);
      flash = true;
      break;
    case AttentionBackend::Native:
      flash = false;
      break;
    case AttentionBackend::Auto:
      flash = flash_ok;
      break;
  }
  if (!flash) {
    if (D > 256) fail("[attention] the native kernel takes head dim <= 256, got ", D);
    if (Sk > native_attention_max_keys(int(D)))
      fail("[attention] the native kernel takes at most ", native_attention_max_keys(int(D)), " keys, got ", Sk);
  }

  DeviceTensor out = DeviceTensor::empty(q.dtype(), q.shape(), "attention");  // [B, Sq, Hq, D]
  if (out.numel() == 0) return out;
  const size_t es = dtype_size(q.dtype());
  for (int64_t b0 = 0; b0 < B; b0 += kAttnBatchChunk) {
    const int64_t nb = std::min<int64_t>(kAttnBatchChunk, B - b0);
    AttnArgs a{};
    a.q = static_cast<const unsigned char*>(q.data()) + size_t(b0 * Sq * Hq * D) * es;
    a.k = static_cast<const unsigned char*>(k.data()) + size_t(b0 * Sk * Hkv * D) * es;
    a.v = static_cast<const unsigned char*>(v.data()) + size_t(b0 * Sk * Hkv * D) * es;
    a.o = static_cast<unsigned char*>(out.data()) + size_t(b0 * Sq * Hq * D) * es;
    a.qt = q.dtype();
    a.ot = out.dtype();
    a.B = nb, a.Sq = Sq, a.Sk = Sk, a.Hq = int(Hq), a.Hkv = int(Hkv), a.D = int(D);
    a.scale = scale;
    a.causal = causal;
    for (int64_t i = 0; i < nb; ++i) {
      int64_t kv = key_valid.empty() ? Sk : key_valid[size_t(b0 + i)];
      a.key_valid[i] = int32_t(std::max<int64_t>(0, std::min(kv, Sk)));
    }
    if (flash)
      launch_flash_attention(a, flash_use_ldmatrix());
    else
      launch_native_attention(a);
  }
  return out;
}

}  // namespace zimage::cuda
