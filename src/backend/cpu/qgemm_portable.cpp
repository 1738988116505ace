// The integer GEMM tile (qgemm_kernels.h) in plain loops, built for baseline x86-64 (CMakeLists.txt
// gives this file -march=x86-64): the `portable` level, signed activations.
#include "backend/cpu/qgemm_kernels.h"

namespace zimage::cpu::portable {

void qgemm_tile(const QTile& t) {
  float out[kQTileMaxRows * 32];
  const int G = t.G, NG = G / 4;
  const int64_t QB = t.nib ? G * 8 : G * 16;
  for (int m = 0; m < t.mr; ++m)
    for (int j = 0; j < t.np; ++j) {
      const QPanel& p = t.p[j];
      for (int l = 0; l < 16; ++l) {
        float acc = 0.f;
        for (int64_t b = 0; b < t.nb; ++b) {
          const int8_t* xq = t.x + m * t.ldx + b * G;
          const int8_t* wq = p.q + b * QB;
          int32_t idot = -t.off * int32_t(t.xs[m * t.ldxd + b]);
          for (int k = 0; k < G; ++k) {
            const int g = k / 4;
            const int w = t.nib ? (uint8_t(wq[(g % (NG / 2)) * 64 + l * 4 + k % 4]) >> (g < NG / 2 ? 0 : 4)) & 0x0F
                                : int(wq[g * 64 + l * 4 + k % 4]);
            idot += int32_t(xq[k]) * w;
          }
          float v = float(idot) * p.s[b * 16 + l];
          if (p.mn) v += p.mn[b * 16 + l] * t.xs[m * t.ldxd + b];
          acc += v * t.xd[m * t.ldxd + b];
        }
        out[m * 32 + j * 16 + l] = acc;
      }
    }
  qtile_store(t, out);
}

}  // namespace zimage::cpu::portable
