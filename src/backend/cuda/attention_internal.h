// Launchers of the two attention kernels (attention_flash.cu, attention_native.cu), called by
// attention.cu after it validated shapes. Batches come in chunks of kAttnBatchChunk items so
// that the per-item key lengths travel by value in the kernel parameters.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace zimage::cuda {

constexpr int kAttnBatchChunk = 64;

struct AttnArgs {
  const void* q;
  const void* k;
  const void* v;
  void* o;
  DType qt, ot;  // q/k/v share a dtype
  int64_t B, Sq, Sk;
  int Hq, Hkv, D;
  float scale;
  bool causal;
  int32_t key_valid[kAttnBatchChunk];  // per item, already clamped to [0, Sk]
};

// q/k/v bf16, D == 128, pointers 16-byte aligned. use_ldmatrix false loads the mma fragments
// with plain shared-memory loads instead (a slower, independent path for diagnosing).
void launch_flash_attention(const AttnArgs& a, bool use_ldmatrix);
void launch_native_attention(const AttnArgs& a);
// Which fragment path attention() gives the flash kernel (default: ldmatrix, unless the
// environment sets ZIMAGE_CUDA_FLASH_NO_LDMATRIX=1). For tests.
void set_flash_use_ldmatrix(bool on);
// Largest Sk the native kernel takes (its scores live in shared memory).
int64_t native_attention_max_keys(int D);

}  // namespace zimage::cuda
