// AMX tile set-up shared by the AMX kernels (attention_bf16_avx512.cpp, gemm_amx.cpp): all eight
// tiles 16 rows x 64 bytes (16 f32, or 16 pairs of bf16). Only call on a CPU where
// cpu_has_amx_bf16() (kernels.h) is true: that also asks the OS for the tile state.
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace zimage::cpu {

struct alignas(64) AmxTileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

__attribute__((target("amx-tile"))) inline void amx_configure_full_tiles() {
  AmxTileConfig c;
  for (int i = 0; i < 8; ++i) {
    c.rows[i] = 16;
    c.colsb[i] = 64;
  }
  _tile_loadconfig(&c);
}

__attribute__((target("amx-tile"))) inline void amx_release_tiles() { _tile_release(); }

// The 32 x 32 f32 block C in tmm0-3 (tmm0 rows 0-15 columns 0-15, tmm1 columns 16-31, tmm2 and
// tmm3 rows 16-31), c pointing at its first element, ldc its row stride in floats.
__attribute__((target("amx-tile"))) inline void amx_zero_c() {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
}
__attribute__((target("amx-tile"))) inline void amx_load_c(const float* c, int64_t ldc) {
  _tile_loadd(0, c, ldc * 4);
  _tile_loadd(1, c + 16, ldc * 4);
  _tile_loadd(2, c + 16 * ldc, ldc * 4);
  _tile_loadd(3, c + 16 * ldc + 16, ldc * 4);
}
__attribute__((target("amx-tile"))) inline void amx_store_c(float* c, int64_t ldc) {
  _tile_stored(0, c, ldc * 4);
  _tile_stored(1, c + 16, ldc * 4);
  _tile_stored(2, c + 16 * ldc, ldc * 4);
  _tile_stored(3, c + 16 * ldc + 16, ldc * 4);
}

// One K step of a 32 x 32 f32 block held in tmm0-3: loads the two 16-row A tiles (tmm4, tmm5;
// row strides in bytes) and the two B tiles (tmm6, tmm7), then tmm0 += A0 B0, tmm1 += A0 B1,
// tmm2 += A1 B0, tmm3 += A1 B1.
__attribute__((target("amx-tile,amx-bf16"))) inline void amx_step_2x2(const void* a0, const void* a1, int64_t lda,
                                                                      const void* b0, const void* b1, int64_t ldb) {
  _tile_loadd(4, a0, lda);
  _tile_loadd(5, a1, lda);
  _tile_loadd(6, b0, ldb);
  _tile_loadd(7, b1, ldb);
  _tile_dpbf16ps(0, 4, 6);
  _tile_dpbf16ps(1, 4, 7);
  _tile_dpbf16ps(2, 5, 6);
  _tile_dpbf16ps(3, 5, 7);
}

}  // namespace zimage::cpu
