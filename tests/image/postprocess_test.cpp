// Postprocess exactness against diffusers' VaeImageProcessor.postprocess (fixture made by
// make_postprocess_fixture.py from the real diffusers code, bits stored raw).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "image/postprocess.h"
#include "util/test_util.h"

using namespace zimage;

namespace {

nlohmann::json load_fixture() {
  return nlohmann::json::parse(test::read_file(test::fixture("image/postprocess.json")));
}

Tensor input_tensor(const nlohmann::json& j, const std::string& dtype) {
  Shape shape = j["shape"].get<Shape>();
  auto bits = j[dtype]["input_bits"].get<std::vector<uint32_t>>();
  DType dt = parse_dtype(dtype);
  Tensor t = Tensor::empty(dt, shape);
  EXPECT_EQ(size_t(t.numel()), bits.size());
  for (size_t i = 0; i < bits.size(); ++i) {
    if (dt == DType::F32)
      t.data<uint32_t>()[i] = bits[i];
    else
      t.data<uint16_t>()[i] = uint16_t(bits[i]);
  }
  return t;
}

void check_dtype(const std::string& dtype) {
  auto j = load_fixture();
  Tensor x = input_tensor(j, dtype);
  Shape s = x.shape();

  Tensor f = postprocess_float(x);
  ASSERT_EQ(f.shape(), (Shape{s[0], s[2], s[3], s[1]}));
  ASSERT_EQ(f.dtype(), DType::F32);
  auto np_bits = j[dtype]["np_bits"].get<std::vector<uint32_t>>();
  ASSERT_EQ(np_bits.size(), size_t(f.numel()));
  int bad = 0;
  for (size_t i = 0; i < np_bits.size(); ++i) {
    uint32_t got = f32_bits(f.f32()[i]);
    if (got != np_bits[i] && bad++ < 5)
      ADD_FAILURE() << dtype << " np[" << i << "]: got " << f.f32()[i] << " want " << f32_from_bits(np_bits[i]);
  }
  EXPECT_EQ(bad, 0) << dtype << ": float outputs differing in bits";

  auto imgs = postprocess(x);
  ASSERT_EQ(imgs.size(), size_t(s[0]));
  auto pil = j[dtype]["pil"].get<std::vector<int>>();
  const size_t per = size_t(s[1] * s[2] * s[3]);
  bad = 0;
  for (size_t b = 0; b < imgs.size(); ++b) {
    EXPECT_EQ(imgs[b].width, s[3]);
    EXPECT_EQ(imgs[b].height, s[2]);
    EXPECT_EQ(imgs[b].channels, s[1]);
    ASSERT_EQ(imgs[b].pixels.size(), per);
    for (size_t i = 0; i < per; ++i)
      if (imgs[b].pixels[i] != pil[b * per + i] && bad++ < 5)
        ADD_FAILURE() << dtype << " pil[" << b << "][" << i << "]: got " << int(imgs[b].pixels[i]) << " want "
                      << pil[b * per + i];
  }
  EXPECT_EQ(bad, 0) << dtype << ": pixels differing";
}

}  // namespace

TEST(Postprocess, Float32MatchesDiffusersBitExact) { check_dtype("float32"); }
TEST(Postprocess, Bfloat16MatchesDiffusersBitExact) { check_dtype("bfloat16"); }
TEST(Postprocess, Float16MatchesDiffusersBitExact) { check_dtype("float16"); }

// The fixture starts with float32 inputs landing exactly on k + 0.5 after * 255: numpy rounds half
// to even, so an even k stays k and an odd k goes up. Half-away-from-zero would get the even ones wrong.
TEST(Postprocess, TiesRoundHalfToEven) {
  auto j = load_fixture();
  const int ties = j["num_ties"].get<int>();
  ASSERT_GT(ties, 100);
  Tensor x = input_tensor(j, "float32");
  Tensor f = postprocess_float(x);
  auto imgs = postprocess(x);
  const Shape s = x.shape();
  const int64_t C = s[1], H = s[2], W = s[3];
  int even = 0, odd = 0;
  for (int i = 0; i < ties; ++i) {
    // NCHW flat index i of batch 0 -> NHWC position.
    int64_t c = i / (H * W), y = (i / W) % H, xx = i % W;
    int64_t o = (y * W + xx) * C + c;
    float scaled = f.f32()[o] * 255.0f;
    ASSERT_EQ(scaled - std::floor(scaled), 0.5f) << "input " << i << " is not a tie";
    int k = int(std::floor(scaled));
    int want = (k % 2 == 0) ? k : k + 1;
    EXPECT_EQ(imgs[0].pixels[size_t(o)], want) << "tie at " << scaled;
    (k % 2 == 0 ? even : odd)++;
  }
  EXPECT_GT(even, 50);
  EXPECT_GT(odd, 50);
}

TEST(Postprocess, ToUint8Rule) {
  EXPECT_EQ(to_uint8(0.f), 0);
  EXPECT_EQ(to_uint8(1.f), 255);
  EXPECT_EQ(to_uint8(0.5f), 128);  // 127.5 -> 128 (even)
  EXPECT_EQ(to_uint8(std::nanf("")), 0);
  // 0.5/255 * 255 in float32 is exactly 0.5 -> rounds to 0 (half to even), not 1.
  float v = 0.5f / 255.f;
  ASSERT_EQ(v * 255.f, 0.5f);
  EXPECT_EQ(to_uint8(v), 0);
}

TEST(Postprocess, NanPropagatesThroughClampAndBecomesZero) {
  Tensor x = Tensor::from_f32({1, 1, 1, 3}, {std::nanf(""), 2.f, -2.f});
  Tensor f = postprocess_float(x);
  EXPECT_TRUE(std::isnan(f.f32()[0]));
  EXPECT_EQ(f.f32()[1], 1.f);
  EXPECT_EQ(f.f32()[2], 0.f);
  auto im = postprocess(x);
  EXPECT_EQ(im[0].pixels, (std::vector<uint8_t>{0, 255, 0}));
  EXPECT_EQ(im[0].channels, 1);
}

TEST(Postprocess, ChannelsLastLayout) {
  // [1, 3, 2, 2] with channel c, pixel p = value distinct per (c, p).
  std::vector<float> v(12);
  for (int c = 0; c < 3; ++c)
    for (int p = 0; p < 4; ++p) v[size_t(c * 4 + p)] = -1.f + 2.f * float(c * 4 + p) / 255.f;
  auto im = postprocess(Tensor::from_f32({1, 3, 2, 2}, v));
  ASSERT_EQ(im.size(), 1u);
  EXPECT_EQ(im[0].width, 2);
  EXPECT_EQ(im[0].height, 2);
  for (int p = 0; p < 4; ++p)
    for (int c = 0; c < 3; ++c) EXPECT_EQ(im[0].pixels[size_t(p * 3 + c)], c * 4 + p) << p << "," << c;
}

TEST(Postprocess, BadShapesAreErrors) {
  auto expect_error = [](const Tensor& t, const std::string& part) {
    try {
      postprocess(t);
      ADD_FAILURE() << "no error for " << shape_str(t.shape());
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).rfind("[image]", 0), 0u) << e.what();
    }
  };
  expect_error(Tensor::zeros(DType::F32, {3, 4, 4}), "[3, 4, 4]");
  expect_error(Tensor::zeros(DType::F32, {1, 2, 4, 4}), "2 channels");
  expect_error(Tensor::zeros(DType::F32, {1, 3, 0, 4}), "empty");
}

TEST(Postprocess, NoDenormalizeKeepsValues) {
  Tensor x = Tensor::from_f32({1, 1, 1, 2}, {0.25f, 1.f});
  auto im = postprocess(x, /*denormalize=*/false);
  EXPECT_EQ(im[0].pixels, (std::vector<uint8_t>{64, 255}));  // 63.75 -> 64
  EXPECT_THROW(postprocess(Tensor::from_f32({1, 1, 1, 1}, {-0.5f}), false), Error);
}
