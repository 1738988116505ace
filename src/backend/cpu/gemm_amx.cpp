// bf16 GEMM on Intel AMX tiles: y[M,N] = x[M,K] · w[N,K]^T (+ bias), f32 accumulation.
//
// Debian's oneDNN 2.6 reaches ~1.05-1.38 TFLOP/s on 2 cores at the transformer's shapes; this
// kernel ~1.3-1.85 (tools/bench/bench_gemm). Layout of the work:
//   - M in blocks of up to about kMc rows. The rows of one M block are packed for all of K into
//     16x32 tiles (contiguous 1 KB each, prefetch-friendly), once, shared by the threads.
//   - N in pairs of 16-column tiles, split between threads; each thread walks its pairs in
//     chunks of kNcPairs whose f32 partial sums (rows x 256) stay in L2 across K.
//   - K in blocks of kKc: per block, a pair's weights are packed on the fly into AMX's
//     pair-interleaved (VNNI) layout, 2 x kKc/32 tiles (16 KB at kKc 256) that stay in L1 for
//     every row block. Weights are read in place (mmapped [N, K]); nothing is packed at load time.
//   - C: four 16x16 f32 tiles (a 32x32 block) accumulate over one K block, then go back to the
//     chunk's buffer; after the last K block the chunk is written out with the bias, as f32 or
//     rounded to bf16.
// Only shapes with N and K multiples of 32 take this path (every Z-Image and Qwen3 projection);
// others, and CPUs without AMX, use oneDNN.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "backend/cpu/amx_tiles.h"
#include "backend/cpu/cpu_level.h"
#include "backend/cpu/kernels.h"
#include "core/dtype.h"

namespace zimage::cpu {
namespace {

constexpr int64_t kMc = 768;     // rows per M block, at most about (A block of one K block: 768 x 256 bf16 = 384 KB)
constexpr int64_t kKc = 256;     // K per block
constexpr int64_t kNcPairs = 8;  // column pairs per chunk: C chunk rows x 256 f32 (768 KB at 768 rows)

// A[r0 : r0 + rows, k0 : k0 + kc] (row stride ldx) -> tiles [rows32 / 16][kc / 32][16][32],
// rows past `rows` zero.
void pack_a(const uint16_t* x, int64_t ldx, int64_t rows, int64_t rows32, int64_t k0, int64_t kc, uint16_t* out) {
  const int64_t kts = kc / 32;
  for (int64_t r = 0; r < rows32; ++r) {
    uint16_t* dst = out + ((r / 16) * kts * 16 + (r % 16)) * 32;
    if (r < rows) {
      const uint16_t* src = x + r * ldx + k0;
      for (int64_t kk = 0; kk < kts; ++kk) std::memcpy(dst + kk * 512, src + kk * 32, 64);
    } else {
      for (int64_t kk = 0; kk < kts; ++kk) std::memset(dst + kk * 512, 0, 64);
    }
  }
}

// w rows n0 .. n0+31, columns k0 .. k0+kc -> 2 x kc/32 tiles [16 k-pairs][16 n] of 32-bit pairs:
// tile t (columns n0 + 16 t ..), k-step kk: element (r, c) = (w[n][k], w[n][k + 1]),
// n = n0 + 16 t + c, k = k0 + 32 kk + 2 r. A 16 x 16 transpose of 32-bit words per tile.
// GCC 12's _mm512_undefined_epi32() (the unused merge source of the unpack intrinsics) is
// `__m512i __Y = __Y;`, which -Wmaybe-uninitialized reports (GCC bug 105593, fixed in GCC 13).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
__attribute__((target("avx512f"))) void pack_b(const uint16_t* w, int64_t K, int64_t n0, int64_t k0, int64_t kc,
                                               uint32_t* out) {
  const int64_t kts = kc / 32;
  for (int t = 0; t < 2; ++t)
    for (int64_t kk = 0; kk < kts; ++kk) {
      uint32_t* tile = out + (t * kts + kk) * 256;
      __m512i v[16];
      for (int c = 0; c < 16; ++c)
        v[c] = _mm512_loadu_si512(reinterpret_cast<const void*>(w + (n0 + 16 * t + c) * K + k0 + kk * 32));
      // Transpose 16x16 32-bit: rows c (columns n) -> rows r (k-pairs).
      __m512i a[16], b[16];
      for (int i = 0; i < 8; ++i) {
        a[2 * i] = _mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]);
      }
      for (int i = 0; i < 4; ++i) {
        b[4 * i + 0] = _mm512_unpacklo_epi64(a[4 * i + 0], a[4 * i + 2]);
        b[4 * i + 1] = _mm512_unpackhi_epi64(a[4 * i + 0], a[4 * i + 2]);
        b[4 * i + 2] = _mm512_unpacklo_epi64(a[4 * i + 1], a[4 * i + 3]);
        b[4 * i + 3] = _mm512_unpackhi_epi64(a[4 * i + 1], a[4 * i + 3]);
      }
      // b[4 i + j] holds, in each 128-bit lane L, the words k-pair (4 L + j') of columns 4 i .. 4 i + 3.
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 4; ++j) {
          a[8 * i + j] = _mm512_shuffle_i32x4(b[8 * i + j], b[8 * i + 4 + j], 0x88);
          a[8 * i + 4 + j] = _mm512_shuffle_i32x4(b[8 * i + j], b[8 * i + 4 + j], 0xdd);
        }
      for (int j = 0; j < 8; ++j) {
        b[j] = _mm512_shuffle_i32x4(a[j], a[8 + j], 0x88);
        b[8 + j] = _mm512_shuffle_i32x4(a[j], a[8 + j], 0xdd);
      }
      // b[j] is now k-pair row j: columns 0-3 from lane j % 4 of the first group, and so on.
      for (int j = 0; j < 16; ++j) _mm512_store_si512(reinterpret_cast<void*>(tile + j * 16), b[j]);
    }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// C[32 x 32] (row stride ldc floats) = (accumulate ? C : 0) + A[32 rows, kts * 32] · B^T, A as two
// packed 16-row tile columns a0, a1, B as two packed 16-column tile columns b0, b1.
__attribute__((target("amx-tile,amx-bf16"))) void block_32x32(const uint16_t* a0, const uint16_t* a1,
                                                              const uint32_t* b0, const uint32_t* b1, int64_t kts,
                                                              float* c, int64_t ldc, bool accumulate) {
  if (accumulate)
    amx_load_c(c, ldc);
  else
    amx_zero_c();
  for (int64_t kk = 0; kk < kts; ++kk) amx_step_2x2(a0 + kk * 512, a1 + kk * 512, 64, b0 + kk * 256, b1 + kk * 256, 64);
  amx_store_c(c, ldc);
}

void* aligned_buffer(std::vector<char>& storage, size_t bytes) {
  if (storage.size() < bytes + 64) storage.resize(bytes + 64);
  return reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(storage.data()) + 63) & ~uintptr_t(63));
}

}  // namespace

bool gemm_amx_bf16(int64_t M, int64_t N, int64_t K, const void* xv, int64_t ldx, const void* wv, const float* bias,
                   void* y, int64_t ldy, DType yt) {
  if (!kernels().gemm_amx || N % 32 != 0 || K % 32 != 0 || M <= 0) return false;
  const auto* x = static_cast<const uint16_t*>(xv);
  const auto* w = static_cast<const uint16_t*>(wv);
  const int64_t pairs = N / 32, kblocks = (K + kKc - 1) / kKc;
  // Equal M blocks of at most about kMc rows (1056 rows: one block, not 1024 + 32).
  const int64_t mblocks = (M + kMc + 31) / (kMc + 32);
  const int64_t mc_rows = std::min(M, ((M + mblocks - 1) / mblocks + 31) / 32 * 32);
  const int64_t rows32_max = (mc_rows + 31) / 32 * 32;
  // A of one M block, packed for all of K and shared by the team: [kblock][rows32 / 16][kts][16][32].
  // One buffer per calling thread, so GEMMs called from different threads do not share it.
  static thread_local std::vector<char> a_store;
  auto* ap = static_cast<uint16_t*>(aligned_buffer(a_store, size_t(rows32_max * K) * 2));
#pragma omp parallel
  {
    static thread_local std::vector<char> b_store, c_store;
    const int t = omp_get_thread_num(), T = omp_get_num_threads();
    const int64_t p0 = pairs * t / T, p1 = pairs * (t + 1) / T;
    auto* bp = static_cast<uint32_t*>(aligned_buffer(b_store, size_t(kNcPairs * 32 * kKc) * 2));
    auto* cb = static_cast<float*>(aligned_buffer(c_store, size_t(rows32_max * kNcPairs * 32) * 4));
    if (p1 > p0) amx_configure_full_tiles();
    for (int64_t m0 = 0; m0 < M; m0 += mc_rows) {
      const int64_t rows = std::min(mc_rows, M - m0), rows32 = (rows + 31) / 32 * 32;
#pragma omp for schedule(static)
      for (int64_t kb = 0; kb < kblocks; ++kb) {
        const int64_t k0 = kb * kKc, kc = std::min(kKc, K - k0);
        pack_a(x + m0 * ldx, ldx, rows, rows32, k0, kc, ap + rows32 * k0);
      }  // implicit barrier: A is packed
      // The thread's columns in chunks of kNcPairs pairs: the chunk's f32 C stays in L2 over K.
      for (int64_t c0 = p0; c0 < p1; c0 += kNcPairs) {
        const int64_t c1 = std::min(p1, c0 + kNcPairs), ccols = (c1 - c0) * 32;
        for (int64_t kb = 0; kb < kblocks; ++kb) {
          const int64_t k0 = kb * kKc, kc = std::min(kKc, K - k0), kts = kc / 32;
          const uint16_t* ak = ap + rows32 * k0;
          for (int64_t p = c0; p < c1; ++p) {
            pack_b(w, K, p * 32, k0, kc, bp);
            float* cpair = cb + (p - c0) * 32;
            for (int64_t r = 0; r < rows32; r += 32) {
              const uint16_t* a0 = ak + (r / 16) * kts * 512;
              block_32x32(a0, a0 + kts * 512, bp, bp + kts * 256, kts, cpair + r * ccols, ccols, kb > 0);
            }
          }
        }
        // Write out the chunk: bias, then f32 or bf16.
        const int64_t n0 = c0 * 32;
        for (int64_t r = 0; r < rows; ++r) {
          const float* src = cb + r * ccols;
          if (yt == DType::F32) {
            float* dst = static_cast<float*>(y) + (m0 + r) * ldy + n0;
            for (int64_t n = 0; n < ccols; ++n) dst[n] = bias ? src[n] + bias[n0 + n] : src[n];
          } else {
            uint16_t* dst = static_cast<uint16_t*>(y) + (m0 + r) * ldy + n0;
            for (int64_t n = 0; n < ccols; ++n) dst[n] = f32_to_bf16(bias ? src[n] + bias[n0 + n] : src[n]);
          }
        }
      }
#pragma omp barrier
    }
    if (p1 > p0) amx_release_tiles();
  }
  return true;
}

}  // namespace zimage::cpu
