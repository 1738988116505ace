// The CPU kernel levels, the one feature probe and the one kernel table (src/backend/cpu).
//
// Levels, best first: amx (AMX-BF16 tiles + everything of avx512), avx512 (AVX-512 F/BW/DQ/VL
// with BF16 and VNNI), avx2 (AVX2 + FMA), portable (plain loops built for baseline x86-64).
// The table is chosen once, on first use, from the probe: the best level this CPU has, or the
// one named by ZIMAGE_CPU=amx|avx512|avx2|portable (an error when the CPU lacks it). oneDNN's
// own dispatch is capped at the forced level too (dnnl::set_max_cpu_isa), so a forced level runs
// its own ISA in the library GEMMs and convolutions as well. Callers: src/ops only.
#pragma once
#include <cstdint>
#include <vector>

namespace zimage::cpu {

struct QTile;     // qgemm_kernels.h
struct QPackJob;  // qgemm_kernels.h

enum class Level { Portable = 0, Avx2 = 1, Avx512 = 2, Amx = 3 };
const char* level_name(Level l);  // "portable", "avx2", "avx512", "amx"

// What this CPU (and OS) offers, probed once.
struct Features {
  bool avx2 = false, fma = false;
  bool avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false;
  bool avx512_bf16 = false, avx512_vnni = false;
  bool amx_tile = false, amx_bf16 = false, amx_int8 = false;
  bool amx_granted = false;  // Linux granted this process the AMX tile state
};
const Features& features();

// The first feature level `l` needs that this CPU lacks ("avx512_bf16", ...), or nullptr.
const char* missing_feature(Level l);
// The levels this CPU supports, portable first.
std::vector<Level> supported_levels();
// The level a ZIMAGE_CPU value asks for (null or empty: the best supported). Throws zimage::Error
// naming the value when it is unknown or the CPU lacks the level (and the missing feature).
Level level_from_env_value(const char* value);
// The level of the kernel table in use: chosen once (ZIMAGE_CPU or the best supported).
// Throws zimage::Error naming ZIMAGE_CPU's value when it is unknown or the CPU lacks the level.
Level active_level();

// One function per kernel that has ISA-specific versions. Shapes are validated by src/ops.
struct Kernels {
  Level level;
  // Attention ([B, S, H, D] f32 pointers), see ops::attention / ops::attention_torch_bf16.
  void (*attention_f32)(const float* q, const float* k, const float* v, float* out, int64_t B, int64_t Sq, int64_t Sk,
                        int64_t Hq, int64_t Hkv, int64_t D, float scale, bool causal, const int64_t* key_valid);
  void (*attention_bf16)(const float* q, const float* k, const float* v, float* out, int64_t B, int64_t Sq, int64_t Sk,
                         int64_t Hq, int64_t Hkv, int64_t D, float scale, bool causal, const int64_t* key_valid);
  // y[i] = exp(x[i]) (vectorised polynomial at avx512/amx, std::exp otherwise); y may be x.
  void (*exp_f32)(const float* x, float* y, int64_t n);
  // The f32 GEMM y[M,N] = x[M,K] · w[N,K]^T (+ bias[N]) with row strides ldx, ldy, whose row
  // results never depend on M (gemm_rows.inc), at the avx2 and portable levels; null: oneDNN's
  // (avx512, amx: its rows do not depend on M there, BackendOps.LinearRowsDoNotDependOnM). bf16
  // GEMMs without oneDNN bf16 widen to it. ZIMAGE_GEMM=onednn turns it off (A/B runs only: oneDNN
  // 2.6's avx2 rows depend on M, so a batch's images then differ from the same images alone).
  void (*gemm_f32)(int64_t M, int64_t N, int64_t K, const float* x, int64_t ldx, const float* w, const float* bias,
                   float* y, int64_t ldy);
  // bf16 GEMMs with N, K multiples of 32 on AMX tiles (false: oneDNN). ZIMAGE_GEMM=onednn turns it off.
  bool gemm_amx;
  // Channels-last rows (C contiguous channels per pixel), see ops/channels_last_ops.cpp:
  // s1[c] += sum (x - shift[c]), s2[c] += sum (x - shift[c])^2 over pixels [p0, p1), float partial
  // sums per 64 pixels added to the doubles.
  void (*cl_sums_f32)(const float* x, int64_t C, const float* shift, int64_t p0, int64_t p1, double* s1, double* s2);
  void (*cl_sums_bf16)(const uint16_t* x, int64_t C, const float* shift, int64_t p0, int64_t p1, double* s1,
                       double* s2);
  // y = x * a[c] + sh[c], then (silu) SiLU of it (bf16: the affine result rounded to bf16 first);
  // pixels [p0, p1); bf16 results rounded to nearest even. y may be x.
  void (*cl_apply_f32)(const float* x, float* y, int64_t C, const float* a, const float* sh, int64_t p0, int64_t p1,
                       bool silu);
  void (*cl_apply_bf16)(const uint16_t* x, uint16_t* y, int64_t C, const float* a, const float* sh, int64_t p0,
                        int64_t p1, bool silu);
  // y[i] = bf16(y[i] + x[i]) for i in [0, n), one thread.
  void (*add_bf16)(uint16_t* y, const uint16_t* x, int64_t n);
  // The element loops of the fused bf16 row ops (row_kernels.inc; ops/modulation.cpp), every
  // level the same bits. w, s, g may be null (no affine weight / scale / gate). inv: the row's
  // RMSNorm factor.
  //   modulate:  o[i] = bf16(bf16(bf16(x[i] * inv) * w[i]) * s[i])
  //   gate_add:  x[i] = bf16(x[i] + bf16(g[i] * bf16(bf16(y[i] * inv) * w[i])))
  //   silu_mul:  y[i] = bf16(bf16(a[i] / (1 + e[i])) * b[i]), e = exp(-a)
  //   round:     y[i] = bf16(x[i])
  void (*modulate_row_bf16)(const float* x, int64_t n, float inv, const float* w, const float* s, uint16_t* o);
  void (*gate_add_row_bf16)(const float* y, int64_t n, float inv, const float* w, const float* g, float* x);
  void (*silu_mul_row_bf16)(const float* a, const float* b, const float* e, float* y, int64_t n);
  void (*round_row_bf16)(const float* x, float* y, int64_t n);
  // The integer GEMM's tile (qgemm.h, qgemm_kernels.h); act_u8: it takes the activations as q + 128.
  void (*qgemm_tile)(const QTile& t);
  bool qgemm_act_u8;
  // Packs one panel of the integer GEMM's weights (qgemm_kernels.h), the same bytes at every level.
  void (*qgemm_pack_panel)(const QPackJob& j);
  // Quantizes one activation row for qgemm_tile (qgemm_kernels.h: QQuantizeRow).
  void (*qgemm_quantize_row)(const void* x, bool bf16, int64_t K, int G, int8_t* q, float* d, float* s);
};

// The table of active_level() (throws as active_level()). Resolve it outside parallel regions.
const Kernels& kernels();
// The table of one level (it must be supported: tests and benchmarks).
const Kernels& kernels_for(Level l);

// Tests: runs the table of `l` (supported) until destroyed. oneDNN's ISA cap is process-wide and
// set once, so only the non-library kernels switch.
class ScopedLevel {
 public:
  explicit ScopedLevel(Level l);
  ~ScopedLevel();
  ScopedLevel(const ScopedLevel&) = delete;
  ScopedLevel& operator=(const ScopedLevel&) = delete;

 private:
  const Kernels* prev_;
};

}  // namespace zimage::cpu
