// Each elementwise / norm / rope / layout kernel against the CPU op on random data, for float32
// storage (rel L2 <= 1e-4) and bf16 storage (inputs hold bf16 values, result rounded once: <= 2e-2).
#include <gtest/gtest.h>

#include <cmath>

#include "backend/cuda/ops.h"
#include "cuda/cuda_test_util.h"
#include "ops/ops.h"
#include "transformer/patchify.h"
#include "transformer/timestep_embedder.h"

namespace zimage::cuda {
namespace {

using test::random_tensor;

class CudaKernels : public ::testing::TestWithParam<DType> {
 protected:
  DType dt() const { return GetParam(); }
  bool bf() const { return GetParam() == DType::BF16; }
  Tensor rnd(Shape s, uint64_t seed, float lo = -2.f, float hi = 2.f) {
    return random_tensor(std::move(s), seed, lo, hi, bf());
  }
  DeviceTensor up(const Tensor& t) { return DeviceTensor::upload(t, dt()); }
  double tol() const { return test::tol_for(dt()); }
};

// 1 + scale, as the CPU transformer block builds it before ops::modulate.
Tensor one_plus(const Tensor& s) {
  Tensor r = s.clone();
  for (int64_t i = 0; i < r.numel(); ++i) r.f32()[i] = 1.f + r.f32()[i];
  return r;
}

TEST_P(CudaKernels, RmsNormWithWeight) {
  ZI_REQUIRE_GPU();
  const Tensor x = rnd({37, 200}, 1), w = rnd({200}, 2);
  const DeviceTensor dw = DeviceTensor::upload(w, DType::F32);
  EXPECT_LE(test::rel_err(rms_norm(up(x), &dw, 1e-5f), ops::rms_norm(x, w, 1e-5f)), tol());
  EXPECT_LE(test::rel_err(rms_norm(up(x), nullptr, 1e-6f), ops::rms_norm(x, Tensor(), 1e-6f)), tol());
}

TEST_P(CudaKernels, RmsNormHeadsAsRows) {  // qk-norm: [T, H, D] normalised over D
  ZI_REQUIRE_GPU();
  const Tensor x = rnd({50, 3, 128}, 3), w = rnd({128}, 4);
  const DeviceTensor dw = DeviceTensor::upload(w, dt());  // a bf16 weight is accepted too
  EXPECT_LE(test::rel_err(rms_norm(up(x), &dw, 1e-5f), ops::rms_norm(x, w, 1e-5f)), tol());
}

TEST_P(CudaKernels, RmsNormModulatedPerItem) {
  ZI_REQUIRE_GPU();
  const std::vector<int64_t> rows{10, 0, 23};
  const Tensor x = rnd({33, 96}, 5), w = rnd({96}, 6), s = rnd({3, 96}, 7, -0.5f, 0.5f);
  const DeviceTensor dw = DeviceTensor::upload(w, DType::F32), ds = up(s);
  const Tensor want = ops::modulate(ops::rms_norm(x, w, 1e-5f), one_plus(s), rows, DType::F32);
  EXPECT_LE(test::rel_err(rms_norm(up(x), &dw, 1e-5f, &ds, rows), want), tol());
  EXPECT_THROW(rms_norm(up(x), &dw, 1e-5f, &ds, {10, 23}), Error);     // 2 counts for 3 items
  EXPECT_THROW(rms_norm(up(x), &dw, 1e-5f, &ds, {10, 1, 23}), Error);  // sums to 34
}

TEST_P(CudaKernels, LayerNormModulated) {
  ZI_REQUIRE_GPU();
  const std::vector<int64_t> rows{7, 12};
  const Tensor x = rnd({19, 160}, 8, 1.f, 3.f), s = rnd({2, 160}, 9, -0.5f, 0.5f);  // non-zero mean
  const DeviceTensor ds = up(s);
  const Tensor want = ops::modulate(ops::layer_norm(x, Tensor(), Tensor(), 1e-6f), one_plus(s), rows, DType::F32);
  EXPECT_LE(test::rel_err(layer_norm(up(x), 1e-6f, &ds, rows), want), tol());
  EXPECT_LE(test::rel_err(layer_norm(up(x), 1e-6f), ops::layer_norm(x, Tensor(), Tensor(), 1e-6f)), tol());
}

TEST_P(CudaKernels, TanhGatedResidualAdd) {
  ZI_REQUIRE_GPU();
  const std::vector<int64_t> rows{5, 9};
  const Tensor x = rnd({14, 64}, 10), y = rnd({14, 64}, 11), g = rnd({2, 64}, 12);
  Tensor tg = g.clone();
  for (int64_t i = 0; i < tg.numel(); ++i) tg.f32()[i] = std::tanh(tg.f32()[i]);
  Tensor want = x.clone();
  ops::gate_add_(want, tg, y, rows, DType::F32);
  DeviceTensor dx = up(x);
  const DeviceTensor dg = up(g);
  gate_add_(dx, &dg, up(y), rows);
  EXPECT_LE(test::rel_err(dx, want), tol());
  // No gate: plain residual add.
  Tensor want2 = x.clone();
  ops::gate_add_(want2, Tensor(), y, rows, DType::F32);
  DeviceTensor dx2 = up(x);
  gate_add_(dx2, nullptr, up(y), rows);
  EXPECT_LE(test::rel_err(dx2, want2), tol());
}

TEST_P(CudaKernels, SwiGLU) {
  ZI_REQUIRE_GPU();
  const Tensor a = rnd({31, 250}, 13, -6.f, 6.f), b = rnd({31, 250}, 14);
  EXPECT_LE(test::rel_err(silu_mul(up(a), up(b)), ops::silu_mul(a, b)), tol());
}

TEST_P(CudaKernels, RopeInterleaved) {
  ZI_REQUIRE_GPU();
  const int64_t T = 21, H = 3, D = 128;
  const Tensor x = rnd({T, H, D}, 15);
  const Tensor ang = random_tensor({T, D / 2}, 16, -3.f, 3.f);
  Tensor cs = Tensor::empty(DType::F32, {T, D / 2, 2});
  for (int64_t i = 0; i < T * D / 2; ++i) {
    cs.f32()[2 * i] = std::cos(ang.f32()[i]);
    cs.f32()[2 * i + 1] = std::sin(ang.f32()[i]);
  }
  Tensor want = x.clone();
  ops::rope_interleaved_(want, cs);
  DeviceTensor dx = up(x);
  rope_interleaved_(dx, DeviceTensor::upload(cs));
  EXPECT_LE(test::rel_err(dx, want), tol());
}

TEST_P(CudaKernels, RopeRotateHalf) {
  ZI_REQUIRE_GPU();
  const int64_t B = 2, S = 17, H = 4, D = 64;
  const Tensor x = rnd({B, S, H, D}, 17);
  const Tensor ang = random_tensor({S, D / 2}, 18, -3.f, 3.f);
  Tensor cos = Tensor::empty(DType::F32, {S, D}), sin = Tensor::empty(DType::F32, {S, D});
  for (int64_t s = 0; s < S; ++s)
    for (int64_t i = 0; i < D; ++i) {  // cat(freqs, freqs)
      cos.f32()[s * D + i] = std::cos(ang.f32()[s * D / 2 + i % (D / 2)]);
      sin.f32()[s * D + i] = std::sin(ang.f32()[s * D / 2 + i % (D / 2)]);
    }
  Tensor want = x.clone();
  ops::rope_rotate_half_(want, cos, sin);
  DeviceTensor dx = up(x);
  rope_rotate_half_(dx, DeviceTensor::upload(cos), DeviceTensor::upload(sin));
  EXPECT_LE(test::rel_err(dx, want), tol());
}

TEST_P(CudaKernels, PatchifyAndUnpatchifyAreExactPermutations) {
  ZI_REQUIRE_GPU();
  transformer::PatchGrid g;
  g.C = 16, g.F = 1, g.H = 12, g.W = 10;
  const PatchDims p{g.C, g.F, g.H, g.W, g.pF, g.pH, g.pW};
  const Tensor img = rnd({g.C, g.F, g.H, g.W}, 19);
  Tensor want = Tensor::empty(DType::F32, {g.tokens(), g.patch_dim()});
  transformer::patchify(img, g, want.f32());
  const DeviceTensor tok = patchify(up(img), p, dt());
  EXPECT_EQ(tok.download().to_vector(), want.to_vector());  // a permutation: exact
  EXPECT_EQ(unpatchify(tok, p, DType::F32).download().to_vector(), img.to_vector());
  EXPECT_THROW(patchify(up(img), PatchDims{16, 1, 12, 11, 1, 2, 2}, dt()), Error);
}

INSTANTIATE_TEST_SUITE_P(Storage, CudaKernels, ::testing::Values(DType::F32, DType::BF16),
                         [](const auto& info) { return std::string(info.param == DType::F32 ? "F32" : "BF16"); });

TEST(CudaKernelsF32, TimestepEmbedding) {
  ZI_REQUIRE_GPU();
  const std::vector<float> t{0.f, 1.f, 437.5f, 1000.f};
  for (int64_t dim : {256, 255}) {
    const Tensor want = transformer::TimestepEmbedder::timestep_embedding(t, dim);
    EXPECT_LE(test::rel_err(timestep_embedding(t, dim), want), test::kF32Tol) << "dim " << dim;
  }
}

}  // namespace
}  // namespace zimage::cuda
