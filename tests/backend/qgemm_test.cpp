// The integer GEMM on ggml block-quantized weights (backend/cpu/qgemm.h) at every CPU kernel level
// this CPU offers (cpu::ScopedLevel in-process; ctest's backend_ops_level_* run the binary again
// with ZIMAGE_CPU forced), against two references computed here in double:
// 1. the same block math: the activations quantized as qgemm.h states (d = max|x| / 127,
//    q = nearbyint(x * (1 / d)) per block), the weights as (q, s, mn) blocks (qgemm_unpack_row,
//    itself checked bit for bit against gguf::dequantize_rows), the integer sums exact. The kernels
//    differ only by float32 rounding: each block term d * (s * idot + mn * sum q_x) takes at most
//    3 roundings and the running sum one per block, so |y - ref| <= (nb + 4) u T with u = 2^-24,
//    nb the blocks per row and T = sum_b |d| (|s * idot| + |mn * sum q_x|), plus u |y| for the bias
//    add (and the bf16 rounding, 2^-9 |y|, for bf16 outputs).
// 2. dequantize-then-GEMM with the unquantized activations: the difference is the activation
//    quantization, |x - d q| <= d / 2 per element, so |y - ref2| <= sum_b (d_b / 2) sum_k |w_k|
//    (w_k = s q_k + mn), times 1.0001 for the rounding of x * (1 / d), plus the f32 slack of 1.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <random>
#include <vector>

#include "backend/cpu/cpu_level.h"
#include "backend/cpu/qgemm.h"
#include "backend/cpu/qgemm_kernels.h"
#include "core/gguf.h"
#include "ops/quantized.h"
#include "util/gguf_writer.h"

namespace zimage {
namespace {

using cpu::Level;
using gguf::GgmlType;
constexpr double kU = 1.0 / (1 << 24);

const GgmlType kTypes[] = {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::Q4_K,
                           GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::Q3_K, GgmlType::Q2_K};

float scale_of(GgmlType t) { return gguf::type_traits(uint32_t(t))->block == 256 ? 1e-3f : 4e-3f; }

// Weight rows unpacked into (q, s, mn) blocks.
struct Unpacked {
  int G = 0;
  int64_t N = 0, K = 0;
  std::vector<int8_t> q;
  std::vector<float> s, mn;
};
Unpacked unpack(GgmlType t, const std::string& bytes, int64_t N, int64_t K) {
  Unpacked u;
  u.G = cpu::qgemm_block(uint32_t(t));
  u.N = N;
  u.K = K;
  const int64_t nb = K / u.G;
  const size_t rb = size_t(K / gguf::type_traits(uint32_t(t))->block * gguf::type_traits(uint32_t(t))->bytes);
  u.q.resize(size_t(N * K));
  u.s.resize(size_t(N * nb));
  u.mn.resize(size_t(N * nb));
  for (int64_t n = 0; n < N; ++n)
    cpu::qgemm_unpack_row(uint32_t(t), reinterpret_cast<const uint8_t*>(bytes.data()) + n * rb, K, &u.q[n * K],
                          &u.s[n * nb], &u.mn[n * nb]);
  return u;
}

// The activation quantization as qgemm.h states it.
struct QAct {
  std::vector<int> q;
  std::vector<float> d;
};
QAct quantize(const std::vector<float>& x, int64_t M, int64_t K, int G) {
  QAct a;
  a.q.resize(x.size());
  a.d.resize(size_t(M * K / G));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t b = 0; b < K / G; ++b) {
      const float* xb = &x[m * K + b * G];
      float amax = 0;
      for (int k = 0; k < G; ++k) amax = std::max(amax, std::fabs(xb[k]));
      const float d = amax / 127.f, id = d != 0.f ? 1.f / d : 0.f;
      a.d[m * (K / G) + b] = d;
      for (int k = 0; k < G; ++k) a.q[m * K + b * G + k] = int(std::nearbyint(xb[k] * id));
    }
  return a;
}

std::vector<float> randv(size_t n, uint32_t seed, float sd = 1.f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.f, sd);
  std::vector<float> v(n);
  for (float& f : v) f = nd(g);
  return v;
}

class Qgemm : public ::testing::TestWithParam<Level> {
 protected:
  void SetUp() override {
    try {
      cpu::active_level();
    } catch (const Error& e) {
      GTEST_SKIP() << e.what();
    }
    level_.emplace(GetParam());
  }
  std::optional<cpu::ScopedLevel> level_;
};

// (s, mn, q) is the stored block: float(s * q) - (-mn) equals gguf-py's dequantized value.
TEST(QgemmUnpack, EqualsDequantize) {
  for (GgmlType t : kTypes) {
    const int64_t N = 3, K = 512;
    const std::string bytes = test::random_blocks(uint32_t(t), N * K, 11, scale_of(t));
    const Unpacked u = unpack(t, bytes, N, K);
    std::vector<float> w(size_t(N * K));
    gguf::dequantize_rows(uint32_t(t), bytes.data(), w.data(), N * K);
    int bad = 0;
    for (int64_t i = 0; i < N * K; ++i) {
      const int64_t blk = i / u.G;
      volatile float p = u.s[blk] * float(u.q[i]);  // no fused multiply-add
      const float v = p + u.mn[blk];
      bad += v != w[i];
    }
    EXPECT_EQ(bad, 0) << gguf::type_name(uint32_t(t));
    EXPECT_TRUE(cpu::qgemm_supports(uint32_t(t)));
  }
  EXPECT_FALSE(cpu::qgemm_supports(uint32_t(GgmlType::Q4_1)));
  EXPECT_FALSE(cpu::qgemm_supports(uint32_t(GgmlType::F16)));
}

struct Shape3 {
  int64_t M, N, K;
};

void check_case(GgmlType t, Shape3 sh, bool bf16_in, bool bf16_out, bool with_bias, uint32_t seed) {
  const auto [M, N, K] = sh;
  const gguf::TypeTraits* tt = gguf::type_traits(uint32_t(t));
  SCOPED_TRACE(std::string(tt->name) + " M=" + std::to_string(M) + " N=" + std::to_string(N) +
               " K=" + std::to_string(K) + (bf16_in ? " x bf16" : " x f32") + (bf16_out ? " y bf16" : " y f32"));
  const std::string bytes = test::random_blocks(uint32_t(t), N * K, seed, scale_of(t));
  const Unpacked u = unpack(t, bytes, N, K);
  const int G = u.G;
  const int64_t nb = K / G;
  std::vector<float> x = randv(size_t(M * K), seed + 1, 2.f);
  for (int64_t i = 0; i < M * K; i += 37) x[size_t(i)] *= 8.f;  // uneven blocks
  for (int64_t k = 0; k < G; ++k) x[size_t(k)] = 0.f;           // an all-zero block (d = 0)
  std::vector<uint16_t> xb(x.size());
  if (bf16_in)
    for (size_t i = 0; i < x.size(); ++i) {
      xb[i] = f32_to_bf16(x[i]);
      x[i] = bf16_to_f32(xb[i]);
    }
  const std::vector<float> bias = randv(size_t(N), seed + 2);
  std::vector<float> y32(size_t(M * N), std::numeric_limits<float>::quiet_NaN());
  std::vector<uint16_t> y16(size_t(M * N), 0xffff);
  cpu::qgemm_nt(M, N, K, bf16_in ? static_cast<const void*>(xb.data()) : x.data(), bf16_in ? DType::BF16 : DType::F32,
                K, reinterpret_cast<const uint8_t*>(bytes.data()), size_t(K / tt->block * tt->bytes), uint32_t(t),
                with_bias ? bias.data() : nullptr, bf16_out ? static_cast<void*>(y16.data()) : y32.data(), N,
                bf16_out ? DType::BF16 : DType::F32);
  const QAct a = quantize(x, M, K, G);
  double worst1 = 0, worst2 = 0;
  int bad1 = 0, bad2 = 0;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double ref = 0, T = 0, ref2 = 0, A = 0, B = 0;
      for (int64_t b = 0; b < nb; ++b) {
        int64_t idot = 0, xs = 0;
        double wabs = 0;
        for (int k = 0; k < G; ++k) {
          const int64_t i = b * G + k;
          idot += int64_t(a.q[m * K + i]) * u.q[n * K + i];
          xs += a.q[m * K + i];
          const double w = double(u.s[n * nb + b]) * u.q[n * K + i] + u.mn[n * nb + b];
          const double wm = std::fabs(double(u.s[n * nb + b]) * u.q[n * K + i]) + std::fabs(u.mn[n * nb + b]);
          ref2 += w * x[m * K + i];
          wabs += wm;
          B += wm * std::fabs(x[m * K + i]);
        }
        const double d = a.d[m * nb + b], s = u.s[n * nb + b], mn = u.mn[n * nb + b];
        ref += d * (s * double(idot) + mn * double(xs));
        T += std::fabs(d) * (std::fabs(s * double(idot)) + std::fabs(mn * double(xs)));
        A += d / 2 * wabs;
      }
      const double bv = with_bias ? bias[n] : 0.0;
      const double got = bf16_out ? bf16_to_f32(y16[m * N + n]) : y32[m * N + n];
      const double out_round = bf16_out ? std::ldexp(1.0, -8) * std::fabs(got) : 0.0;  // bf16 rounding (+ margin)
      const double bound1 = (nb + 4) * kU * T + kU * std::fabs(ref + bv) + out_round + 1e-30;
      const double e1 = std::fabs(got - (ref + bv));
      worst1 = std::max(worst1, e1 / bound1);
      bad1 += !(e1 <= bound1);
      const double bound2 = 1.0001 * A + 4 * kU * B + bound1;
      const double e2 = std::fabs(got - (ref2 + bv));
      worst2 = std::max(worst2, e2 / bound2);
      bad2 += !(e2 <= bound2);
    }
  EXPECT_EQ(bad1, 0) << "worst |y - same-block-math ref| / bound " << worst1;
  EXPECT_EQ(bad2, 0) << "worst |y - dequantize-then-GEMM| / bound " << worst2;
  std::printf("  %s %s: |y - ref| <= %.3g of its bound, |y - dequant GEMM| <= %.3g of its bound\n", tt->name,
              cpu::level_name(cpu::kernels().level), worst1, worst2);
}

TEST_P(Qgemm, EqualsTheBlockMathAndTheDequantizedGemm) {
  uint32_t seed = 100;
  for (GgmlType t : kTypes) {
    // tails: M % 4, N % 16, an odd panel count; K of 1 and 2 superblocks
    check_case(t, {5, 40, 256}, false, false, true, seed++);
    check_case(t, {1, 16, 512}, true, false, false, seed++);
    check_case(t, {7, 33, 256}, true, true, true, seed++);
    check_case(t, {13, 40, 256}, false, true, false, seed++);  // several row tiles
  }
  // several weight chunks (qgemm.cpp packs ~768 KB of panels at a time)
  check_case(GgmlType::Q8_0, {6, 700, 2048}, false, false, true, seed++);
  check_case(GgmlType::Q4_K, {3, 1100, 1024}, false, true, true, seed++);
}

TEST_P(Qgemm, NonFiniteActivationsGiveNan) {
  const int64_t M = 3, N = 20, K = 64;
  const std::string bytes = test::random_blocks(uint32_t(GgmlType::Q8_0), N * K, 5, 4e-3f);
  std::vector<float> x = randv(size_t(M * K), 6);
  x[K + 40] = std::numeric_limits<float>::infinity();  // row 1
  std::vector<float> y(size_t(M * N));
  cpu::qgemm_nt(M, N, K, x.data(), DType::F32, K, reinterpret_cast<const uint8_t*>(bytes.data()), 68,
                uint32_t(GgmlType::Q8_0), nullptr, y.data(), N, DType::F32);
  for (int64_t n = 0; n < N; ++n) {
    EXPECT_TRUE(std::isfinite(y[n]));
    EXPECT_TRUE(std::isnan(y[N + n]));
    EXPECT_TRUE(std::isfinite(y[2 * N + n]));
  }
  // a NaN followed by finite values in its block
  x[2 * K + 3] = std::numeric_limits<float>::quiet_NaN();
  cpu::qgemm_nt(M, N, K, x.data(), DType::F32, K, reinterpret_cast<const uint8_t*>(bytes.data()), 68,
                uint32_t(GgmlType::Q8_0), nullptr, y.data(), N, DType::F32);
  for (int64_t n = 0; n < N; ++n) EXPECT_TRUE(std::isnan(y[2 * N + n])) << n;
  // a row of denormals only: its blocks count as zeros (1 / d would overflow to infinity)
  for (int64_t k = 0; k < K; ++k) x[2 * K + k] = (k % 2 ? -1e-40f : 3e-41f);
  cpu::qgemm_nt(M, N, K, x.data(), DType::F32, K, reinterpret_cast<const uint8_t*>(bytes.data()), 68,
                uint32_t(GgmlType::Q8_0), nullptr, y.data(), N, DType::F32);
  for (int64_t n = 0; n < N; ++n) EXPECT_EQ(y[2 * N + n], 0.f);
}

// Every level's panel packer (cpu::Kernels::qgemm_pack_panel) writes the bytes of the plain-loop
// reference packer (qgemm_pack_panel_scalar, the portable level's): whole and partial panels (the
// rows past N are zeros), a row stride with a gap after each row, and blocks of random bytes
// throughout (scales that are NaN, infinite or subnormal halves).
TEST_P(Qgemm, PackedPanelsEqualTheReferencePackers) {
  uint32_t seed = 300;
  for (GgmlType t : kTypes) {
    const gguf::TypeTraits* tt = gguf::type_traits(uint32_t(t));
    struct Case {
      int64_t N, K, gap;
      bool raw;
    };
    for (const Case c :
         {Case{40, 512, 0, false}, Case{16, 256, 0, true}, Case{7, 1024, 24, false}, Case{53, 256, 8, true}}) {
      SCOPED_TRACE(std::string(tt->name) + " N=" + std::to_string(c.N) + " K=" + std::to_string(c.K) +
                   " gap=" + std::to_string(c.gap) + (c.raw ? " random bytes" : ""));
      const size_t rb = size_t(c.K / tt->block * tt->bytes), stride = rb + size_t(c.gap);
      std::string blocks = c.raw ? std::string() : test::random_blocks(uint32_t(t), c.N * c.K, seed, scale_of(t));
      std::mt19937 rng(seed++);
      std::string w(size_t(c.N) * stride, '\0');
      for (char& ch : w) ch = char(rng() & 0xFF);
      if (!c.raw)
        for (int64_t n = 0; n < c.N; ++n) std::memcpy(&w[size_t(n) * stride], &blocks[size_t(n) * rb], rb);
      const auto* wp = reinterpret_cast<const uint8_t*>(w.data());
      const std::unique_ptr<cpu::QPacked> got = cpu::qgemm_pack(c.N, c.K, wp, stride, uint32_t(t));
      std::unique_ptr<cpu::QPacked> ref;
      {
        cpu::ScopedLevel portable(Level::Portable);
        ref = cpu::qgemm_pack(c.N, c.K, wp, stride, uint32_t(t));
      }
      ASSERT_EQ(got->bytes(), ref->bytes());
      ASSERT_EQ(got->bytes(), cpu::qgemm_packed_bytes(c.N, c.K, uint32_t(t)));
      size_t diff = 0, first = 0;
      for (size_t i = got->bytes(); i-- > 0;)
        if (got->base[i] != ref->base[i]) {
          ++diff;
          first = i;
        }
      EXPECT_EQ(diff, 0u) << "first differing byte at " << first << " of " << got->bytes() << " (panel bytes "
                          << got->panel_bytes << ")";
    }
  }
}

// Each level's activation quantizer (cpu::Kernels::qgemm_quantize_row) gives the plain-loop one's
// bytes, scales and sums: float32 and bf16 rows, G = 32 and 16, blocks with a NaN, an infinity,
// only denormals, only zeros, and values half-way between two integers (ties to even).
TEST_P(Qgemm, QuantizedActivationsEqualTheReference) {
  const cpu::Kernels& k = cpu::kernels();
  const float inf = std::numeric_limits<float>::infinity();
  for (int G : {32, 16})
    for (bool bf16 : {false, true}) {
      SCOPED_TRACE("G=" + std::to_string(G) + (bf16 ? " bf16" : " f32"));
      const int64_t K = 512;
      std::vector<float> x = randv(size_t(K), uint32_t(40 + G), 3.f);
      x[5] = std::numeric_limits<float>::quiet_NaN();
      x[40] = inf;
      x[70] = -inf;
      for (int i = 96; i < 128; ++i) x[size_t(i)] = (i % 2 ? -1.f : 1.f) * 1e-40f * float(i % 5 + 1);
      for (int i = 128; i < 160; ++i) x[size_t(i)] = 0.f;
      for (int i = 160; i < 192; ++i) x[size_t(i)] = i < 191 ? float(i - 176) + 0.5f : 127.f;  // d = 1: ties
      for (int i = 192; i < 224; ++i) x[size_t(i)] = float(i - 208) * 0.25f + (i == 223 ? 31.75f : 0.f);
      std::vector<uint16_t> xb(x.size());
      for (size_t i = 0; i < x.size(); ++i) xb[i] = f32_to_bf16(x[i]);
      const void* xp = bf16 ? static_cast<const void*>(xb.data()) : x.data();
      const size_t nb = size_t(K / G);
      std::vector<int8_t> q(size_t(K), 1), qr(size_t(K), 2);
      std::vector<float> d(nb, -1.f), dr(nb, -2.f), sm(nb, -1.f), sr(nb, -2.f);
      k.qgemm_quantize_row(xp, bf16, K, G, q.data(), d.data(), sm.data());
      cpu::qgemm_quantize_row_scalar(xp, bf16, K, G, qr.data(), dr.data(), sr.data(), k.qgemm_act_u8);
      EXPECT_EQ(std::memcmp(q.data(), qr.data(), q.size()), 0);
      EXPECT_EQ(std::memcmp(d.data(), dr.data(), nb * 4), 0);
      EXPECT_EQ(std::memcmp(sm.data(), sr.data(), nb * 4), 0);
      EXPECT_TRUE(std::isnan(d[0]));
      EXPECT_EQ(d[size_t(128 / G)], 0.f);
    }
}

// ---- the packed copy ops::linear keeps with a quantized matrix (ops/quantized.h) ----

ops::QuantizedMatrix int_matrix(GgmlType t, int64_t N, int64_t K, std::shared_ptr<const void> keep,
                                const uint8_t* data) {
  const gguf::TypeTraits* tt = gguf::type_traits(uint32_t(t));
  ops::QuantizedMatrix q;
  q.ggml_type = uint32_t(t);
  q.rows = N;
  q.cols = K;
  q.data = data;
  q.row_bytes = size_t(K / tt->block * tt->bytes);
  q.keepalive = std::move(keep);
  q.compute = DType::BF16;
  q.mode = ops::QuantCompute::Int;
  return q;
}

std::vector<float> direct(GgmlType t, const Tensor& x, const uint8_t* w, int64_t N, int64_t K) {
  const gguf::TypeTraits* tt = gguf::type_traits(uint32_t(t));
  std::vector<float> y(size_t(x.numel() / K * N));
  cpu::qgemm_nt(x.numel() / K, N, K, x.raw(), x.dtype(), K, w, size_t(K / tt->block * tt->bytes), uint32_t(t), nullptr,
                y.data(), N, DType::F32);
  return y;
}

std::vector<float> values(const Tensor& y) {
  const Tensor f = y.to(DType::F32);
  return std::vector<float>(f.f32(), f.f32() + f.numel());
}

// Packed on the first call (its size as qgemm_packed_bytes states), the same sums as a call on the
// stored blocks, the source bytes untouched (heap memory is never released), and a copy of the
// matrix pointed at other blocks packs those.
TEST(QgemmPacked, OpsLinearPacksOnceAndKeepsTheSource) {
  for (GgmlType t : kTypes) {
    SCOPED_TRACE(gguf::type_name(uint32_t(t)));
    const int64_t N = 40, K = 2048;  // 40 rows: two whole panels and a partial one
    auto bytes = std::make_shared<std::string>(test::random_blocks(uint32_t(t), N * K, 21, scale_of(t)));
    const std::string before = *bytes;
    ops::QuantizedMatrix q = int_matrix(t, N, K, bytes, reinterpret_cast<const uint8_t*>(bytes->data()));
    ASSERT_TRUE(ops::uses_integer_gemm(q));
    EXPECT_EQ(ops::packed_bytes(q), 0u);
    const Tensor x = test::randn({3, K}, 22);
    const std::vector<float> y1 = values(ops::linear(x, q));
    const size_t pb = ops::packed_bytes(q);
    EXPECT_EQ(pb, cpu::qgemm_packed_bytes(N, K, uint32_t(t)));
    const int G = cpu::qgemm_block(uint32_t(t));
    const bool asym = t == GgmlType::Q4_K || t == GgmlType::Q5_K || t == GgmlType::Q2_K;
    const bool nib = t == GgmlType::Q4_K || t == GgmlType::Q4_0;  // 4-bit panels
    EXPECT_EQ(pb, size_t(3 * 16 * K * ((nib ? 0.5 : 1.0) + (asym ? 12 : 8) / double(G))));
    EXPECT_EQ(y1, direct(t, x, reinterpret_cast<const uint8_t*>(before.data()), N, K));
    EXPECT_EQ(values(ops::linear(x, q)), y1);
    EXPECT_EQ(ops::packed_bytes(q), pb);
    EXPECT_TRUE(*bytes == before);

    auto other = std::make_shared<std::string>(test::random_blocks(uint32_t(t), N * K, 23, scale_of(t)));
    ops::QuantizedMatrix q2 = q;  // shares the cache
    q2.data = reinterpret_cast<const uint8_t*>(other->data());
    q2.keepalive = other;
    EXPECT_EQ(values(ops::linear(x, q2)), direct(t, x, q2.data, N, K));
  }
}

// Resident kB of the mapping that holds `p` (/proc/self/smaps), -1 when not found.
long rss_kb_of(const void* p) {
  std::ifstream f("/proc/self/smaps");
  std::string line;
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  bool in = false;
  while (std::getline(f, line)) {
    unsigned long lo = 0, hi = 0;
    char dash = 0;
    if (std::sscanf(line.c_str(), "%lx%c%lx", &lo, &dash, &hi) == 3 && dash == '-' && line.find(':') > line.find(' ')) {
      in = a >= lo && a < hi;
      continue;
    }
    long kb = 0;
    if (in && std::sscanf(line.c_str(), "Rss: %ld kB", &kb) == 1) return kb;
  }
  return -1;
}

// A GGUF file's mapping: once packed, the weight's pages leave the process (the packed copy
// replaces them), and what the file holds is still what a later dequantizing call reads.
TEST(QgemmPacked, FileMappingPagesAreReleasedAfterPacking) {
  const GgmlType t = GgmlType::Q8_0;
  const int64_t N = 256, K = 4096;  // 1.1 MB of blocks
  const std::string blocks = test::random_blocks(uint32_t(t), N * K, 31, scale_of(t));
  const std::string path = test::temp_dir("qgemm_packed") + "/w.gguf";
  {
    const std::string file = test::gguf_bytes({{"w", {N, K}, uint32_t(t), blocks}});
    std::ofstream(path, std::ios::binary).write(file.data(), std::streamsize(file.size()));
  }
  auto f = std::make_shared<gguf::File>(path);
  const uint8_t* data = f->data(*f->find("w"));
  ASSERT_EQ(std::memcmp(data, blocks.data(), blocks.size()), 0);  // every page touched
  const long rss0 = rss_kb_of(data);
  ASSERT_GE(rss0, long(blocks.size() / 1024) - 8);
  ops::QuantizedMatrix q = int_matrix(t, N, K, f->owner(), data);
  const Tensor x = test::randn({5, K}, 32);
  EXPECT_EQ(values(ops::linear(x, q)), direct(t, x, reinterpret_cast<const uint8_t*>(blocks.data()), N, K));
  const long rss1 = rss_kb_of(data);
  EXPECT_LT(rss1, 64) << "resident before " << rss0 << " kB";
  // the released pages are the file's: a dequantizing call rereads them
  ops::QuantizedMatrix qd = q;
  qd.mode = ops::QuantCompute::Dequant;
  auto copy = std::make_shared<std::string>(blocks);
  ops::QuantizedMatrix ref = int_matrix(t, N, K, copy, reinterpret_cast<const uint8_t*>(copy->data()));
  ref.mode = ops::QuantCompute::Dequant;
  EXPECT_EQ(values(ops::linear(x, qd)), values(ops::linear(x, ref)));
  f.reset();
  q = ops::QuantizedMatrix();
  qd = ops::QuantizedMatrix();
  std::filesystem::remove(path);
}

INSTANTIATE_TEST_SUITE_P(Levels, Qgemm, ::testing::ValuesIn(cpu::supported_levels()),
                         [](const ::testing::TestParamInfo<Level>& i) {
                           return std::string(cpu::level_name(i.param));
                         });

}  // namespace
}  // namespace zimage
