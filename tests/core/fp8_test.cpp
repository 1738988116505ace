// float8_e4m3fn weights (safetensors F8_E4M3): the upcast is bit-exact against torch's
// .to(torch.float32) for all 256 codes (tests/fixtures/fp8/codes.safetensors, made by
// tools/reference/make_fp8_fixtures.py); scales (per tensor, per row) and bad files.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/fp8.h"
#include "core/safetensors.h"
#include "util/test_util.h"

using namespace zimage;
namespace fs = std::filesystem;

namespace {

uint32_t bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[size_t(i)] = char((n >> (8 * i)) & 0xff);
  return s;
}

std::string f32_bytes(std::initializer_list<float> v) {
  std::string s;
  for (float f : v) s.append(reinterpret_cast<const char*>(&f), 4);
  return s;
}

// A safetensors file of the given tensors (name, dtype, shape, bytes), in this order.
struct Raw {
  std::string name, dtype, shape, bytes;
};
std::string write_raw(const std::string& path, const std::vector<Raw>& ts) {
  std::string header = "{", data;
  for (const Raw& t : ts) {
    if (header.size() > 1) header += ",";
    header += "\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":" + t.shape + ",\"data_offsets\":[" +
              std::to_string(data.size()) + "," + std::to_string(data.size() + t.bytes.size()) + "]}";
    data += t.bytes;
  }
  header += "}";
  test::write_file(path, le64(header.size()) + header + data);
  return path;
}

// codes 0x38 (1.0), 0x40 (2.0), 0xB8 (-1.0), 0x30 (0.5), 0x7F (NaN), 0x01 (2^-9)
const std::string kW("\x38\x40\xB8\x30\x7F\x01", 6);

std::string open_error(const std::string& path) {
  try {
    WeightStore::open_file(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

class Fp8File : public ::testing::Test {
 protected:
  std::string dir = test::temp_dir("fp8");
  void TearDown() override { fs::remove_all(dir); }
};

}  // namespace

TEST(Fp8, AllCodesBitExactAgainstTorch) {
  const WeightStore ws = WeightStore::open_file(test::fixture("fp8/codes.safetensors"));
  ASSERT_TRUE(ws.is_fp8("codes"));
  const Tensor got = ws.get("codes", {256});  // upcast at load
  const Tensor want = ws.get("f32", {256});
  ASSERT_EQ(got.dtype(), DType::F32);
  int nan = 0;
  for (int c = 0; c < 256; ++c) {
    EXPECT_EQ(bits(got.f32()[c]), bits(want.f32()[c])) << "code " << c;
    EXPECT_EQ(bits(fp8::e4m3_to_f32(uint8_t(c))), bits(want.f32()[c])) << "code " << c;
    nan += std::isnan(want.f32()[c]);
  }
  EXPECT_EQ(nan, 2);  // 0x7F and 0xFF
  EXPECT_EQ(fp8::e4m3_to_f32(0x7E), 448.0f);
  EXPECT_EQ(fp8::e4m3_to_f32(0x01), std::ldexp(1.0f, -9));
}

TEST_F(Fp8File, PerTensorAndPerRowScales) {
  // ComfyUI: one scale per tensor, plus the activation scale and the marker (both unlisted)
  const auto a = write_raw(dir + "/a.safetensors", {{"l.weight", "F8_E4M3", "[2,3]", kW},
                                                    {"l.scale_weight", "F32", "[]", f32_bytes({0.25f})},
                                                    {"l.scale_input", "F32", "[]", f32_bytes({1.0f})},
                                                    {"scaled_fp8", "F8_E4M3", "[0]", ""}});
  WeightStore ws = WeightStore::open_file(a);
  EXPECT_EQ(ws.names(), std::vector<std::string>{"l.weight"});
  EXPECT_TRUE(ws.is_quantized("l.weight"));
  Tensor t = ws.get("l.weight", {2, 3});
  EXPECT_EQ(t.f32()[0], 0.25f);
  EXPECT_EQ(t.f32()[1], 0.5f);
  EXPECT_EQ(t.f32()[2], -0.25f);
  EXPECT_EQ(t.f32()[3], 0.125f);
  EXPECT_TRUE(std::isnan(t.f32()[4]));
  EXPECT_EQ(t.f32()[5], std::ldexp(1.0f, -11));
  QuantizedTensor q = ws.quantized("l.weight", {2, 3});
  EXPECT_EQ(q.ggml_type, fp8::kE4M3Type);
  EXPECT_EQ(q.scale, std::vector<float>{0.25f});
  // diffusers' fp8r: one scale per row ([N] or [N, 1]); a row range of it (fused qkv split)
  for (const char* shape : {"[2]", "[2,1]"}) {
    const auto b = write_raw(dir + "/b.safetensors", {{"l.weight", "F8_E4M3", "[2,3]", kW},
                                                      {"l.weight_scale", "F32", shape, f32_bytes({2.0f, 3.0f})}});
    WeightStore wb = WeightStore::open_file(b);
    Tensor u = wb.get("l.weight", {2, 3});
    EXPECT_EQ(u.f32()[0], 2.0f);
    EXPECT_EQ(u.f32()[2], -2.0f);
    EXPECT_EQ(u.f32()[3], 1.5f);
    wb.alias("l.weight", "l2.weight", 1, 1);
    QuantizedTensor r = wb.quantized("l2.weight", {1, 3});
    EXPECT_EQ(r.scale, std::vector<float>{3.0f});
    float row[3];
    dequantize_row(r, 0, row);
    EXPECT_EQ(row[0], 1.5f);
    EXPECT_EQ(wb.get("l2.weight", {1, 3}).f32()[0], 1.5f);
  }
}

TEST_F(Fp8File, BadFilesAreErrors) {
  // wrong byte count: the safetensors check of shape x dtype against the offsets
  const auto n = write_raw(dir + "/n.safetensors", {{"l.weight", "F8_E4M3", "[2,3]", kW.substr(0, 5)}});
  EXPECT_NE(open_error(n).find("tensor 'l.weight' shape [2, 3] x F8_E4M3 needs 6 bytes but data_offsets span 5"),
            std::string::npos)
      << open_error(n);
  const auto shape = write_raw(dir + "/s.safetensors", {{"l.weight", "F8_E4M3", "[2,3]", kW},
                                                        {"l.scale_weight", "F32", "[3]", f32_bytes({1, 2, 3})}});
  EXPECT_NE(open_error(shape).find("fp8 scale 'l.scale_weight' has shape [3]; for 'l.weight' of shape [2, 3] it must "
                                   "hold one value (per tensor: [] or [1]) or 2 (per row: [2] or [2, 1])"),
            std::string::npos)
      << open_error(shape);
  const auto dt = write_raw(dir + "/d.safetensors", {{"l.weight", "F8_E4M3", "[2,3]", kW},
                                                     {"l.scale_weight", "I32", "[]", std::string(4, '\0')}});
  EXPECT_NE(open_error(dt).find("fp8 scale 'l.scale_weight' has dtype I32, expected F32, BF16 or F16"),
            std::string::npos)
      << open_error(dt);
  const auto nf = write_raw(dir + "/f.safetensors", {{"l.weight", "F8_E4M3", "[2,3]", kW},
                                                     {"l.weight_scale", "F32", "[2]", f32_bytes({1.0f, NAN})}});
  EXPECT_NE(open_error(nf).find("fp8 scale 'l.weight_scale' holds a non-finite value (nan at index 1)"),
            std::string::npos)
      << open_error(nf);
  const auto lone = write_raw(dir + "/l.safetensors", {{"m.weight", "F8_E4M3", "[2,3]", kW},
                                                       {"l.scale_weight", "F32", "[]", f32_bytes({1.0f})}});
  EXPECT_NE(open_error(lone).find("fp8 scale 'l.scale_weight' has no weight 'l.weight'"), std::string::npos)
      << open_error(lone);
  const auto notfp8 = write_raw(dir + "/b.safetensors", {{"l.weight", "F32", "[1]", f32_bytes({1.0f})},
                                                         {"l.scale_weight", "F32", "[]", f32_bytes({1.0f})}});
  EXPECT_NE(open_error(notfp8).find("scale 'l.scale_weight' belongs to 'l.weight', which is F32, not F8_E4M3"),
            std::string::npos)
      << open_error(notfp8);
  const auto two = write_raw(dir + "/t.safetensors", {{"l.weight", "F8_E4M3", "[2,3]", kW},
                                                      {"l.scale_weight", "F32", "[]", f32_bytes({1.0f})},
                                                      {"l.weight_scale", "F32", "[]", f32_bytes({1.0f})}});
  EXPECT_NE(open_error(two).find("'l.weight' has two scales"), std::string::npos) << open_error(two);
  // every message names the file
  for (const auto& p : {shape, dt, nf, lone, notfp8, two}) EXPECT_NE(open_error(p).find(p), std::string::npos) << p;
}
