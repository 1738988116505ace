// The one CPU feature probe, the level choice (ZIMAGE_CPU) and the kernel tables (cpu_level.h),
// plus the kernels.h entry points that dispatch through the table.
#include "backend/cpu/cpu_level.h"

#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "backend/cpu/gemm.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/level_kernels.h"
#include "backend/cpu/qgemm_kernels.h"
#include "core/error.h"

namespace zimage::cpu {

const char* level_name(Level l) {
  switch (l) {
    case Level::Portable:
      return "portable";
    case Level::Avx2:
      return "avx2";
    case Level::Avx512:
      return "avx512";
    case Level::Amx:
      return "amx";
  }
  return "?";
}

const Features& features() {
  static const Features f = [] {
    Features r;
    __builtin_cpu_init();
    // __builtin_cpu_supports also checks that the OS saves the AVX / AVX-512 registers (XGETBV).
    r.avx2 = __builtin_cpu_supports("avx2");
    r.fma = __builtin_cpu_supports("fma");
    r.avx512f = __builtin_cpu_supports("avx512f");
    r.avx512bw = __builtin_cpu_supports("avx512bw");
    r.avx512dq = __builtin_cpu_supports("avx512dq");
    r.avx512vl = __builtin_cpu_supports("avx512vl");
    r.avx512_bf16 = __builtin_cpu_supports("avx512bf16");
    r.avx512_vnni = __builtin_cpu_supports("avx512vnni");
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
      r.amx_bf16 = (d >> 22) & 1u;
      r.amx_tile = (d >> 24) & 1u;
      r.amx_int8 = (d >> 25) & 1u;
    }
    if (r.amx_tile && r.amx_bf16) {
      // Linux hands out the 8 KiB tile state only on request (arch_prctl ARCH_REQ_XCOMP_PERM for
      // XFEATURE_XTILEDATA); the permission is process-wide.
      constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
      r.amx_granted = syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
    }
    return r;
  }();
  return f;
}

const char* missing_feature(Level l) {
  const Features& f = features();
  if (l >= Level::Avx2) {
    if (!f.avx2) return "avx2";
    if (!f.fma) return "fma";
  }
  if (l >= Level::Avx512) {
    if (!f.avx512f) return "avx512f";
    if (!f.avx512bw) return "avx512bw";
    if (!f.avx512dq) return "avx512dq";
    if (!f.avx512vl) return "avx512vl";
    if (!f.avx512_bf16) return "avx512_bf16";
    if (!f.avx512_vnni) return "avx512_vnni";
  }
  if (l >= Level::Amx) {
    if (!f.amx_tile) return "amx_tile";
    if (!f.amx_bf16) return "amx_bf16";
    if (!f.amx_granted) return "the AMX tile state (the OS refused arch_prctl ARCH_REQ_XCOMP_PERM)";
  }
  return nullptr;
}

std::vector<Level> supported_levels() {
  std::vector<Level> r;
  for (Level l : {Level::Portable, Level::Avx2, Level::Avx512, Level::Amx})
    if (!missing_feature(l)) r.push_back(l);
  return r;
}

namespace {

void attention_bf16_avx512(const float* q, const float* k, const float* v, float* out, int64_t B, int64_t Sq,
                           int64_t Sk, int64_t Hq, int64_t Hkv, int64_t D, float scale, bool causal,
                           const int64_t* key_valid) {
  attention_torch_bf16_avx512(q, k, v, out, B, Sq, Sk, Hq, Hkv, D, scale, causal, key_valid, false);
}
void attention_bf16_amx(const float* q, const float* k, const float* v, float* out, int64_t B, int64_t Sq, int64_t Sk,
                        int64_t Hq, int64_t Hkv, int64_t D, float scale, bool causal, const int64_t* key_valid) {
  attention_torch_bf16_avx512(q, k, v, out, B, Sq, Sk, Hq, Hkv, D, scale, causal, key_valid, true);
}

bool gemm_onednn_forced() {
  const char* e = std::getenv("ZIMAGE_GEMM");
  return e && std::strcmp(e, "onednn") == 0;
}

#define ZI_PLAIN_TABLE(ns, lvl)                                                                                        \
  Kernels {                                                                                                            \
    lvl, ns::attention_f32, ns::attention_bf16, ns::exp_f32, gemm_onednn_forced() ? nullptr : ns::gemm_f32, false,     \
        ns::cl_sums_f32, ns::cl_sums_bf16, ns::cl_apply_f32, ns::cl_apply_bf16, ns::add_bf16, ns::modulate_row_bf16,   \
        ns::gate_add_row_bf16, ns::silu_mul_row_bf16, ns::round_row_bf16, ns::qgemm_tile, false, ns::qgemm_pack_panel, \
        ns::qgemm_quantize_row                                                                                         \
  }

const Kernels& table(Level l) {
  static const Kernels tables[] = {
      ZI_PLAIN_TABLE(portable, Level::Portable),
      ZI_PLAIN_TABLE(avx2, Level::Avx2),
      {Level::Avx512, attention_avx512, attention_bf16_avx512, exp_avx512, nullptr, false, avx512::cl_sums_f32,
       avx512::cl_sums_bf16, avx512::cl_apply_f32, avx512::cl_apply_bf16, avx512::add_bf16, avx512::modulate_row_bf16,
       avx512::gate_add_row_bf16, avx512::silu_mul_row_bf16, avx512::round_row_bf16, avx512::qgemm_tile, true,
       avx512::qgemm_pack_panel, avx512::qgemm_quantize_row},
      {Level::Amx, attention_avx512, attention_bf16_amx, exp_avx512, nullptr, !gemm_onednn_forced(),
       avx512::cl_sums_f32, avx512::cl_sums_bf16, avx512::cl_apply_f32, avx512::cl_apply_bf16, avx512::add_bf16,
       avx512::modulate_row_bf16, avx512::gate_add_row_bf16, avx512::silu_mul_row_bf16, avx512::round_row_bf16,
       avx512::qgemm_tile, true, avx512::qgemm_pack_panel, avx512::qgemm_quantize_row},
  };
  return tables[int(l)];
}

std::string supported_list() {
  std::string s;
  const std::vector<Level> v = supported_levels();
  for (auto it = v.rbegin(); it != v.rend(); ++it) s += std::string(s.empty() ? "" : ", ") + level_name(*it);
  return s;
}

std::atomic<const Kernels*> g_active{nullptr};

}  // namespace

Level level_from_env_value(const char* e) {
  if (!e || !*e) return supported_levels().back();
  for (Level l : {Level::Portable, Level::Avx2, Level::Avx512, Level::Amx}) {
    if (std::strcmp(e, level_name(l)) != 0) continue;
    if (const char* miss = missing_feature(l))
      fail("[cpu] ZIMAGE_CPU=", e, ": this CPU lacks ", miss, " (levels it supports: ", supported_list(), ")");
    return l;
  }
  fail("[cpu] ZIMAGE_CPU must be one of amx, avx512, avx2, portable (got \"", e, "\")");
}

Level active_level() {
  static const Level l =
      level_from_env_value(std::getenv("ZIMAGE_CPU"));  // a throw leaves it unset: the next call throws again
  return l;
}

const Kernels& kernels() {
  const Kernels* k = g_active.load(std::memory_order_acquire);
  if (k) return *k;
  const Kernels* want = &table(active_level());
  g_active.compare_exchange_strong(k, want, std::memory_order_acq_rel);
  return *g_active.load(std::memory_order_acquire);
}

const Kernels& kernels_for(Level l) {
  if (const char* miss = missing_feature(l))
    fail("[cpu] level ", level_name(l), " needs ", miss, ", which this CPU lacks");
  return table(l);
}

ScopedLevel::ScopedLevel(Level l) : prev_(&kernels()) { g_active.store(&kernels_for(l)); }
ScopedLevel::~ScopedLevel() { g_active.store(prev_); }

// ---- kernels.h entry points ----

bool cpu_has_avx512() {
  const Features& f = features();
  return f.avx512f && f.avx512bw && f.avx512dq && f.avx512vl;
}
bool cpu_has_avx512_bf16() { return cpu_has_avx512() && features().avx512_bf16; }
bool cpu_has_amx_bf16() {
  const Features& f = features();
  return cpu_has_avx512_bf16() && f.amx_tile && f.amx_bf16 && f.amx_granted;
}

void attention(const float* q, const float* k, const float* v, float* out, int64_t B, int64_t Sq, int64_t Sk,
               int64_t Hq, int64_t Hkv, int64_t D, float scale, bool causal, const int64_t* key_valid) {
  kernels().attention_f32(q, k, v, out, B, Sq, Sk, Hq, Hkv, D, scale, causal, key_valid);
}
void attention_torch_bf16(const float* q, const float* k, const float* v, float* out, int64_t B, int64_t Sq, int64_t Sk,
                          int64_t Hq, int64_t Hkv, int64_t D, float scale, bool causal, const int64_t* key_valid) {
  kernels().attention_bf16(q, k, v, out, B, Sq, Sk, Hq, Hkv, D, scale, causal, key_valid);
}
void attention_generic(const float* q, const float* k, const float* v, float* out, int64_t B, int64_t Sq, int64_t Sk,
                       int64_t Hq, int64_t Hkv, int64_t D, float scale, bool causal, const int64_t* key_valid) {
  portable::attention_f32(q, k, v, out, B, Sq, Sk, Hq, Hkv, D, scale, causal, key_valid);
}
void attention_torch_bf16_generic(const float* q, const float* k, const float* v, float* out, int64_t B, int64_t Sq,
                                  int64_t Sk, int64_t Hq, int64_t Hkv, int64_t D, float scale, bool causal,
                                  const int64_t* key_valid) {
  portable::attention_bf16(q, k, v, out, B, Sq, Sk, Hq, Hkv, D, scale, causal, key_valid);
}
void exp_f32(const float* x, float* y, int64_t n) { kernels().exp_f32(x, y, n); }

bool amx_available() { return kernels().gemm_amx; }

}  // namespace zimage::cpu
