// ops::linear on a quantized (ggml block) weight: tile-by-tile dequantisation + the GEMM equals
// the GEMM on the whole dequantized matrix, in f32 and bf16, over several tiles.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/fp8.h"
#include "core/gguf.h"
#include "ops/ops.h"
#include "ops/quantized.h"
#include "util/gguf_writer.h"
#include "util/test_util.h"

using namespace zimage;

namespace {

// Largest |a - b| over all elements, and largest |a| (both f32).
double max_abs_diff(const Tensor& a, const Tensor& b) {
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, double(std::fabs(a.f32()[i] - b.f32()[i])));
  return m;
}
double max_abs(const Tensor& a) {
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, double(std::fabs(a.f32()[i])));
  return m;
}

struct Case {
  gguf::GgmlType type;
  int64_t N, K;
  bool one_tile = false;
};

void check(const Case& c, DType compute) {
  const gguf::TypeTraits* tt = gguf::type_traits(uint32_t(c.type));
  SCOPED_TRACE(std::string(tt->name) + " " + dtype_name(compute));
  const auto bytes = std::make_shared<std::string>(
      test::random_blocks(uint32_t(c.type), c.N * c.K, 7, tt->block == 256 ? 1e-3f : 4e-3f));
  ops::QuantizedMatrix q;
  q.ggml_type = uint32_t(c.type);
  q.rows = c.N;
  q.cols = c.K;
  q.data = reinterpret_cast<const uint8_t*>(bytes->data());
  q.row_bytes = size_t(c.K / tt->block * tt->bytes);
  q.keepalive = bytes;
  q.compute = compute;
  q.mode = ops::QuantCompute::Dequant;  // this test is about the dequantize path
  Tensor dense = Tensor::empty(DType::F32, {c.N, c.K});
  gguf::dequantize_rows(q.ggml_type, q.data, dense.f32(), c.N * c.K);
  const Tensor w = ops::prepare_weight(dense, compute);
  const Tensor x = test::randn({5, c.K}, 3);
  const Tensor bias = test::randn({c.N}, 4);
  const Tensor want = ops::linear(x, w, &bias);
  const Tensor got = ops::linear(x, q, &bias);
  ASSERT_EQ(got.shape(), want.shape());
  EXPECT_EQ(c.one_tile, c.N <= ops::quant_tile_rows(c.K));
  std::printf("  %s %s: max |tiled - dense| %.3g (max |y| %.3g)\n", tt->name, dtype_name(compute),
              max_abs_diff(got, want), max_abs(want));
  if (c.one_tile)
    EXPECT_EQ(max_abs_diff(got, want), 0.0);  // the same GEMM call on the same values
  else
    EXPECT_LE(max_abs_diff(got, want), 1e-5 * max_abs(want));  // another summation order
  // linear_into (the bf16 block path writes bf16 outputs from bf16 inputs)
  if (compute == DType::BF16) {
    const Tensor xb = x.to(DType::BF16);
    Tensor y1 = Tensor::empty(DType::BF16, {5, c.N}), y2 = Tensor::empty(DType::BF16, {5, c.N});
    ops::linear_into(xb, w, &bias, y1);
    ops::linear_into(xb, q, &bias, y2);
    EXPECT_LE(max_abs_diff(y1.to(DType::F32), y2.to(DType::F32)), 1e-2 * max_abs(want));
  }
}

}  // namespace

// One tile: exactly the dense GEMM. Several tiles (1 MB of f32 rows each): equal up to order.
TEST(QuantizedLinear, TilesEqualTheDenseGemm) {
  for (const Case& c : {Case{gguf::GgmlType::Q8_0, 72, 64, true}, Case{gguf::GgmlType::Q4_K, 300, 512, true},
                        Case{gguf::GgmlType::Q8_0, 1100, 512}, Case{gguf::GgmlType::Q4_0, 600, 1024},
                        Case{gguf::GgmlType::Q5_0, 2100, 256}, Case{gguf::GgmlType::Q4_K, 1100, 512},
                        Case{gguf::GgmlType::Q6_K, 300, 1024}, Case{gguf::GgmlType::Q2_K, 300, 2048}})
    for (DType compute : {DType::F32, DType::BF16}) check(c, compute);
}

TEST(QuantizedLinear, BadShapesAreErrors) {
  auto bytes = std::make_shared<std::string>(test::random_blocks(uint32_t(gguf::GgmlType::Q8_0), 64, 1, 1e-2f));
  ops::QuantizedMatrix q{
      uint32_t(gguf::GgmlType::Q8_0), 2, 32, reinterpret_cast<const uint8_t*>(bytes->data()), 34, bytes, DType::F32,
      ops::QuantCompute::Auto,        {}};
  EXPECT_THROW(ops::linear(test::randn({3, 31}, 1), q), Error);
  const Tensor b = test::randn({3}, 1);
  EXPECT_THROW(ops::linear(test::randn({3, 32}, 1), q, &b), Error);
  q.row_bytes = 33;
  EXPECT_THROW(ops::linear(test::randn({3, 32}, 1), q), Error);
}

// float8_e4m3fn weights with a per-row scale: the same tiling, upcast = f32(code) * scale[row].
TEST(QuantizedLinear, Fp8TilesEqualTheDenseGemm) {
  for (const auto& [N, K] : {std::pair<int64_t, int64_t>{72, 64}, {1100, 512}})
    for (DType compute : {DType::F32, DType::BF16})
      for (bool per_row : {false, true}) {
        SCOPED_TRACE(std::to_string(N) + " " + dtype_name(compute) + (per_row ? " per row" : " per tensor"));
        auto bytes = std::make_shared<std::string>(size_t(N * K), '\0');
        for (int64_t i = 0; i < N * K; ++i)  // every finite code (no 0x7F / 0xFF)
          (*bytes)[size_t(i)] = char(uint8_t(i * 37 % 127) | uint8_t(i % 2 ? 0x80 : 0));
        ops::QuantizedMatrix q;
        q.ggml_type = fp8::kE4M3Type;
        q.rows = N;
        q.cols = K;
        q.data = reinterpret_cast<const uint8_t*>(bytes->data());
        q.row_bytes = size_t(K);
        q.keepalive = bytes;
        q.compute = compute;
        for (int64_t r = 0; r < (per_row ? N : 1); ++r) q.scale.push_back(std::ldexp(1.0f, -8 - int(r % 5)));
        Tensor dense = Tensor::empty(DType::F32, {N, K});
        for (int64_t r = 0; r < N; ++r)
          for (int64_t k = 0; k < K; ++k)
            dense.f32()[r * K + k] = fp8::e4m3_to_f32(q.data[r * K + k]) * q.scale[size_t(per_row ? r : 0)];
        const Tensor x = test::randn({5, K}, 3), bias = test::randn({N}, 4);
        const Tensor want = ops::linear(x, ops::prepare_weight(dense, compute), &bias);
        const Tensor got = ops::linear(x, q, &bias);
        if (N <= ops::quant_tile_rows(K))
          EXPECT_EQ(max_abs_diff(got, want), 0.0);
        else
          EXPECT_LE(max_abs_diff(got, want), 1e-5 * max_abs(want));
      }
  // a scale that is neither per tensor nor per row is refused
  auto bytes = std::make_shared<std::string>(64, '\0');
  ops::QuantizedMatrix q{
      fp8::kE4M3Type,          2,        32, reinterpret_cast<const uint8_t*>(bytes->data()), 32, bytes, DType::F32,
      ops::QuantCompute::Auto, {1, 2, 3}};
  EXPECT_THROW(ops::linear(test::randn({3, 32}, 1), q), Error);
}
