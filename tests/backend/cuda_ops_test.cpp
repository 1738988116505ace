// The CUDA op table (src/backend/cuda/op_table.cpp) op by op: every op of ops.h that the
// transformer calls, on Device::CUDA tensors through ops:: (the dispatch model code uses), against
// the same op on the CPU. f32 paths to rel L2 <= 1e-4; the bf16-storage passes (same rounding
// points, other summation orders and exp) to <= 1e-2. Built only with -DZIMAGE_CUDA=ON, into
// test_cuda; every test skips without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "backend/cuda/backend.h"
#include "cuda/cuda_test_util.h"
#include "ops/ops.h"

namespace zimage::cuda {
namespace {

using test::random_tensor;

constexpr double kF32 = 1e-4, kBf = 1e-2;

Tensor d(const Tensor& t) { return t.to(Device::CUDA); }

// rel L2 of a device result against the CPU one; NaN / wrong device / shape never pass.
double err(const Tensor& got, const Tensor& want) {
  EXPECT_EQ(got.device(), Device::CUDA);
  EXPECT_EQ(got.shape(), want.shape());
  const Tensor h = got.to(Device::CPU).to(DType::F32);
  for (float v : h.to_vector())
    if (!std::isfinite(v)) return 1e30;
  return rel_l2(h, want);
}

class CudaOps : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!available()) GTEST_SKIP() << "no CUDA device";
    register_backend();
  }
  const std::vector<int64_t> rows{30, 41};  // two items
  const int64_t T = 71, N = 96;
};

TEST_F(CudaOps, Linear) {
  const Tensor x = random_tensor({T, N}, 1), w = random_tensor({40, N}, 2), b = random_tensor({40}, 3);
  for (DType wt : {DType::F32, DType::BF16}) {
    const Tensor pw = ops::prepare_weight(w, wt);
    EXPECT_LE(err(ops::linear(d(x), d(pw), nullptr), ops::linear(x, pw)), kF32) << dtype_name(wt);
    const Tensor db = d(b);
    EXPECT_LE(err(ops::linear(d(x), d(pw), &db), ops::linear(x, pw, &b)), kF32) << dtype_name(wt);
  }
  const Tensor pw = ops::prepare_weight(w, DType::BF16);
  for (DType yt : {DType::F32, DType::BF16}) {
    Tensor want = Tensor::empty(yt, {T, 40}), got = Tensor::empty(yt, {T + 5, 40}, Device::CUDA).slice0(2, 2 + T);
    ops::linear_into(x.to(DType::BF16), pw, nullptr, want);
    ops::linear_into(d(x.to(DType::BF16)), d(pw), nullptr, got);
    EXPECT_LE(err(got, want.to(DType::F32)), yt == DType::BF16 ? kBf : kF32) << dtype_name(yt);
  }
}

TEST_F(CudaOps, Attention) {
  const int64_t H = 3, D = 24;
  const Tensor q = random_tensor({1, 40, H, D}, 4, -1, 1, true), k = random_tensor({1, 40, H, D}, 5, -1, 1, true);
  const Tensor v = random_tensor({1, 40, H, D}, 6, -1, 1, true);
  const float s = 1.f / std::sqrt(float(D));
  EXPECT_LE(err(ops::attention(d(q), d(k), d(v), s, false), ops::attention(q, k, v, s, false)), kF32);
  EXPECT_LE(err(ops::attention_torch_bf16(d(q), d(k), d(v), s, false), ops::attention_torch_bf16(q, k, v, s, false)),
            kBf);
  const Tensor q128 = random_tensor({1, 70, 2, 128}, 7, -1, 1, true),
               k128 = random_tensor({1, 70, 2, 128}, 8, -1, 1, true);
  const Tensor v128 = random_tensor({1, 70, 2, 128}, 9, -1, 1, true);  // the flash kernel
  const float s128 = 1.f / std::sqrt(128.f);
  EXPECT_LE(err(ops::attention_torch_bf16(d(q128), d(k128), d(v128), s128, false),
                ops::attention_torch_bf16(q128, k128, v128, s128, false)),
            kBf);
}

TEST_F(CudaOps, NormsAndElementwise) {
  const Tensor x = random_tensor({T, N}, 10, -3, 3), w = random_tensor({N}, 11), y = random_tensor({T, N}, 12, -3, 3);
  EXPECT_LE(err(ops::rms_norm(d(x), d(w), 1e-5f), ops::rms_norm(x, w, 1e-5f)), kF32);
  EXPECT_LE(err(ops::layer_norm(d(x), Tensor(), Tensor(), 1e-6f), ops::layer_norm(x, Tensor(), Tensor(), 1e-6f)), kF32);
  for (DType st : {DType::F32, DType::BF16}) {
    const double tol = st == DType::BF16 ? kBf : kF32;
    EXPECT_LE(err(ops::rms_norm_as(d(x), d(w), 1e-5f, st), ops::rms_norm_as(x, w, 1e-5f, st)), tol);
    EXPECT_LE(err(ops::silu_mul_as(d(x), d(y), st), ops::silu_mul_as(x, y, st)), tol);
    const Tensor sc = random_tensor({2, N}, 13), g = random_tensor({2, N}, 14);
    EXPECT_LE(err(ops::modulate(d(x), d(sc), rows, st), ops::modulate(x, sc, rows, st)), tol);
    Tensor gx = d(x), hx = x.clone();
    ops::gate_add_(gx, d(g), d(y), rows, st);
    ops::gate_add_(hx, g, y, rows, st);
    EXPECT_LE(err(gx, hx), tol);
    const auto gc = ops::adaln_chunks(d(random_tensor({2, 4 * N}, 15)), st);
    const auto hc = ops::adaln_chunks(random_tensor({2, 4 * N}, 15), st);
    for (size_t i = 0; i < 4; ++i) EXPECT_LE(err(gc[i], hc[i]), tol) << i;
  }
  EXPECT_LE(err(ops::silu_mul(d(x), d(y)), ops::silu_mul(x, y)), kF32);
  Tensor a = d(x), b = x.clone();
  ops::silu_(a);
  ops::silu_(b);
  EXPECT_LE(err(a, b), kF32);
  ops::add_(a, d(y));
  ops::add_(b, y);
  EXPECT_LE(err(a, b), kF32);
  ops::round_to_bf16_(a);
  ops::round_to_bf16_(b);
  EXPECT_LE(err(a, b), kF32);
}

TEST_F(CudaOps, FusedBf16Passes) {
  const Tensor x = random_tensor({T, N}, 20, -3, 3, true), w = random_tensor({N}, 21, -1, 1, true);
  const Tensor sc = random_tensor({2, N}, 22, -1, 1, true), g = random_tensor({2, N}, 23, -1, 1, true);
  const Tensor y = random_tensor({T, N}, 24, -5, 5);  // a raw f32 GEMM result
  Tensor out = Tensor::empty(DType::BF16, {T, N}), dout = Tensor::empty(DType::BF16, {T, N}, Device::CUDA);
  ops::rms_norm_modulate_bf16(x, w, sc, rows, 1e-5f, out);
  ops::rms_norm_modulate_bf16(d(x), d(w), d(sc), rows, 1e-5f, dout);
  EXPECT_LE(err(dout, out.to(DType::F32)), kBf);
  Tensor hx = x.clone(), gx = d(x);
  ops::rms_norm_gate_add_bf16_(hx, g, y, w, rows, 1e-5f);
  ops::rms_norm_gate_add_bf16_(gx, d(g), d(y), d(w), rows, 1e-5f);
  EXPECT_LE(err(gx, hx), kBf);
  // head_norm_rope_bf16_: [T, H, D] with a cos/sin table
  const int64_t H = 4, D = 24;
  const Tensor ang = random_tensor({T, D / 2}, 25, -3, 3);
  Tensor cs = Tensor::empty(DType::F32, {T, D / 2, 2});
  for (int64_t i = 0; i < T * D / 2; ++i) {
    cs.f32()[2 * i] = std::cos(ang.f32()[i]);
    cs.f32()[2 * i + 1] = std::sin(ang.f32()[i]);
  }
  const Tensor qn = random_tensor({D}, 26);
  Tensor hq = random_tensor({T, H, D}, 27, -4, 4), gq = d(hq);
  ops::head_norm_rope_bf16_(hq, qn, cs, 1e-5f);
  ops::head_norm_rope_bf16_(gq, d(qn), d(cs), 1e-5f);
  EXPECT_LE(err(gq, hq), kBf);
  Tensor hr = random_tensor({T, H, D}, 28), gr = d(hr);
  ops::rope_interleaved_(hr, cs);
  ops::rope_interleaved_(gr, d(cs));
  EXPECT_LE(err(gr, hr), kF32);
  Tensor hs = Tensor::empty(DType::BF16, {T, N}), gs = Tensor::empty(DType::BF16, {T, N}, Device::CUDA);
  ops::silu_mul_bf16(y, x, hs);
  ops::silu_mul_bf16(d(y), d(x), gs);
  EXPECT_LE(err(gs, hs.to(DType::F32)), kBf);
  Tensor hb = Tensor::empty(DType::BF16, {T, N}), gb = Tensor::empty(DType::BF16, {T, N}, Device::CUDA);
  ops::to_bf16_into(y, hb);
  ops::to_bf16_into(d(y), gb);
  EXPECT_LE(err(gb, hb.to(DType::F32)), kF32);  // the same rounding of the same values
}

TEST_F(CudaOps, MixedDevicesAndMissingOpsAreErrors) {
  const Tensor x = random_tensor({4, 8}, 30), w = random_tensor({3, 8}, 31);
  try {
    ops::linear(d(x), w);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[ops] linear: weight is a cpu tensor"), std::string::npos) << e.what();
  }
  try {
    ops::conv2d(d(random_tensor({1, 2, 4, 4}, 32)), d(random_tensor({2, 2, 3, 3}, 33)), nullptr, 1,
                ops::Padding2d::same(1));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {  // not in the table: the CPU op refuses the device tensor
    EXPECT_NE(std::string(e.what()).find("host access to a cuda tensor"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace zimage::cuda
