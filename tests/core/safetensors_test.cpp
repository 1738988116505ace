#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/safetensors.h"
#include "util/test_util.h"

using namespace zimage;
namespace fs = std::filesystem;

namespace {

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[size_t(i)] = char((n >> (8 * i)) & 0xff);
  return s;
}

// A safetensors file from a header text and a data section.
std::string st_bytes(const std::string& header, const std::string& data) { return le64(header.size()) + header + data; }

std::string write_st(const std::string& dir, const std::string& name, const std::string& bytes) {
  std::string p = dir + "/" + name;
  test::write_file(p, bytes);
  return p;
}

// Expects opening `path` to throw zimage::Error whose message contains the path and `what`.
void expect_bad(const std::string& path, const std::string& what) {
  try {
    SafeTensorsFile f(path);
    FAIL() << "no error for " << path << " (expected: " << what << ")";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find(path), std::string::npos) << m;
    EXPECT_NE(m.find(what), std::string::npos) << m;
  }
}

class SafeTensorsBad : public ::testing::Test {
 protected:
  std::string dir = test::temp_dir("st");
  void TearDown() override { fs::remove_all(dir); }
};

}  // namespace

TEST_F(SafeTensorsBad, GoodFileLoads) {
  std::string data(4 * 6, '\0');
  float* f = reinterpret_cast<float*>(data.data());
  for (int i = 0; i < 6; ++i) f[i] = float(i) * 0.5f;
  auto p = write_st(
      dir, "ok.safetensors",
      st_bytes(R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})", data));
  SafeTensorsFile st(p);
  EXPECT_EQ(st.metadata().at("format"), "pt");
  Tensor t = st.get("a");
  EXPECT_EQ(t.shape(), (Shape{2, 3}));
  EXPECT_FLOAT_EQ(t.f32()[5], 2.5f);
  EXPECT_TRUE(t.read_only());
}

TEST_F(SafeTensorsBad, ShorterThan8Bytes) { expect_bad(write_st(dir, "s", "abc"), "shorter than the 8-byte"); }

TEST_F(SafeTensorsBad, HeaderLengthPastEnd) { expect_bad(write_st(dir, "h", le64(1000) + "{}"), "runs past the end"); }

TEST_F(SafeTensorsBad, HeaderLengthOverCap) { expect_bad(write_st(dir, "cap", le64(200'000'000) + "{}"), "exceeds"); }

TEST_F(SafeTensorsBad, HeaderNotJson) { expect_bad(write_st(dir, "nj", st_bytes("{not json", "")), "not valid JSON"); }

TEST_F(SafeTensorsBad, HeaderNotObject) { expect_bad(write_st(dir, "no", st_bytes("[1,2]", "")), "not a JSON object"); }

TEST_F(SafeTensorsBad, UnknownDtype) {
  expect_bad(
      write_st(dir, "ud", st_bytes(R"({"a":{"dtype":"F17","shape":[1],"data_offsets":[0,4]}})", std::string(4, '\0'))),
      "unknown dtype 'F17'");
}

TEST_F(SafeTensorsBad, OverlappingOffsets) {
  expect_bad(
      write_st(
          dir, "ov",
          st_bytes(
              R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
              std::string(12, '\0'))),
      "overlaps");
}

TEST_F(SafeTensorsBad, Gap) {
  expect_bad(
      write_st(
          dir, "gap",
          st_bytes(
              R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
              std::string(12, '\0'))),
      "gap");
}

TEST_F(SafeTensorsBad, TrailingBytes) {
  expect_bad(
      write_st(dir, "tr", st_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", std::string(9, '\0'))),
      "trailing bytes");
}

TEST_F(SafeTensorsBad, DataPastEnd) {
  expect_bad(
      write_st(dir, "pe", st_bytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::string(4, '\0'))),
      "past the end");
}

TEST_F(SafeTensorsBad, ShapeTimesDtypeNotBytes) {
  expect_bad(
      write_st(dir, "sz", st_bytes(R"({"a":{"dtype":"BF16","shape":[3],"data_offsets":[0,4]}})", std::string(4, '\0'))),
      "needs 6 bytes");
}

TEST_F(SafeTensorsBad, ShapeProductOverflows) {
  expect_bad(write_st(dir, "of",
                      st_bytes(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}})",
                               std::string(4, '\0'))),
             "overflows");
}

TEST_F(SafeTensorsBad, DuplicateName) {
  expect_bad(
      write_st(
          dir, "dup",
          st_bytes(
              R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
              std::string(8, '\0'))),
      "duplicate tensor name 'a'");
}

TEST_F(SafeTensorsBad, NegativeOrFractionalShape) {
  expect_bad(write_st(dir, "neg",
                      st_bytes(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", std::string(4, '\0'))),
             "not a non-negative integer");
}

TEST_F(SafeTensorsBad, NonFloatTensorGetIsAClearError) {
  auto p =
      write_st(dir, "i64", st_bytes(R"({"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", std::string(8, '\0')));
  SafeTensorsFile st(p);
  EXPECT_THROW(st.get("a"), Error);
  EXPECT_THROW(st.get("missing"), Error);
}

// ---- sharded weights -------------------------------------------------------------------------

class ShardIndex : public ::testing::Test {
 protected:
  std::string dir = test::temp_dir("idx");
  std::string comp = dir + "/transformer";
  void SetUp() override {
    fs::create_directories(comp);
    write_st(comp, "part-1.safetensors",
             st_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", std::string(4, '\0')));
    write_st(dir, "outside.safetensors",
             st_bytes(R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", std::string(4, '\0')));
  }
  void TearDown() override { fs::remove_all(dir); }
  std::string index(const nlohmann::json& wm) {
    std::string p = comp + "/diffusion_pytorch_model.safetensors.index.json";
    test::write_file(p, nlohmann::json{{"metadata", {}}, {"weight_map", wm}}.dump());
    return p;
  }
  void expect_bad(const nlohmann::json& wm, const std::string& what) {
    std::string p = index(wm);
    try {
      WeightStore::open_dir(comp);
      FAIL() << "expected: " << what;
    } catch (const Error& e) {
      std::string m = e.what();
      EXPECT_NE(m.find(p), std::string::npos) << m;
      EXPECT_NE(m.find(what), std::string::npos) << m;
    }
  }
};

TEST_F(ShardIndex, GoodIndexLoads) {
  index({{"a", "part-1.safetensors"}});
  auto w = WeightStore::open_dir(comp);
  EXPECT_TRUE(w.has("a"));
  EXPECT_EQ(w.get("a", {1}).numel(), 1);
  EXPECT_THROW(w.get("a", {2}), Error);
}

TEST_F(ShardIndex, DotDotRejected) { expect_bad({{"b", "../outside.safetensors"}}, "leaves the component folder"); }

TEST_F(ShardIndex, AbsolutePathRejected) { expect_bad({{"b", dir + "/outside.safetensors"}}, "absolute"); }

TEST_F(ShardIndex, MissingShard) { expect_bad({{"a", "part-2.safetensors"}}, "is missing"); }

TEST_F(ShardIndex, SymlinkEscapeRejected) {
  fs::create_symlink(dir + "/outside.safetensors", comp + "/link.safetensors");
  expect_bad({{"b", "link.safetensors"}}, "outside the component folder");
}

// The Hugging Face cache layout: snapshot files are symlinks into the repository's blobs/.
TEST_F(ShardIndex, HubCacheBlobSymlinkAccepted) {
  const std::string repo = dir + "/models--org--name";
  const std::string snap_comp = repo + "/snapshots/" + std::string(40, 'c') + "/transformer";
  fs::create_directories(snap_comp);
  fs::create_directories(repo + "/blobs");
  fs::rename(comp + "/part-1.safetensors", repo + "/blobs/0123abcd");
  fs::create_symlink("../../../blobs/0123abcd", snap_comp + "/part-1.safetensors");
  test::write_file(snap_comp + "/diffusion_pytorch_model.safetensors.index.json",
                   nlohmann::json{{"weight_map", {{"a", "part-1.safetensors"}}}}.dump());
  EXPECT_TRUE(WeightStore::open_dir(snap_comp).has("a"));
  // ... but not to another repository's blobs, nor to anything else outside.
  fs::create_directories(dir + "/models--other--repo/blobs");
  fs::rename(repo + "/blobs/0123abcd", dir + "/models--other--repo/blobs/0123abcd");
  fs::remove(snap_comp + "/part-1.safetensors");
  fs::create_symlink("../../../../models--other--repo/blobs/0123abcd", snap_comp + "/part-1.safetensors");
  EXPECT_THROW(WeightStore::open_dir(snap_comp), Error);
}

TEST_F(ShardIndex, TensorNotInShard) { expect_bad({{"zzz", "part-1.safetensors"}}, "does not contain 'zzz'"); }

TEST(WeightStoreGet, WrongShapeNamesTensorExpectedAndActual) {
  std::string dir = test::temp_dir("ws");
  write_st(dir, "model.safetensors",
           st_bytes(R"({"w":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]}})", std::string(12, '\0')));
  auto w = WeightStore::open_dir(dir);
  try {
    w.get("w", {3, 2});
    FAIL();
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("'w'"), std::string::npos) << m;
    EXPECT_NE(m.find("[2, 3]"), std::string::npos) << m;
    EXPECT_NE(m.find("[3, 2]"), std::string::npos) << m;
  }
  fs::remove_all(dir);
}

// ---- configs ---------------------------------------------------------------------------------

TEST(Config, WrongTypedFieldNamesFileKeyAndValue) {
  std::string dir = test::temp_dir("cfg");
  std::string p = dir + "/config.json";
  test::write_file(p, R"({"dim": "big", "eps": 1e-5, "dims": [1, 2], "flag": true})");
  auto c = JsonConfig::load(p);
  try {
    c.get_int("dim");
    FAIL();
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find(p), std::string::npos) << m;
    EXPECT_NE(m.find("'dim'"), std::string::npos) << m;
    EXPECT_NE(m.find("\"big\""), std::string::npos) << m;
  }
  EXPECT_THROW(c.get_int("missing"), Error);
  EXPECT_THROW(c.get_bool("eps"), Error);
  EXPECT_THROW(c.get_int_in("flag", 0, 1), Error);
  EXPECT_EQ(c.get_int_list("dims"), (std::vector<int64_t>{1, 2}));
  EXPECT_DOUBLE_EQ(c.get_float("eps"), 1e-5);
  test::write_file(p, "[1]");
  EXPECT_THROW(JsonConfig::load(p), Error);
  test::write_file(p, "{broken");
  EXPECT_THROW(JsonConfig::load(p), Error);
  fs::remove_all(dir);
}

TEST(SafeTensorsWrite, RoundTripAndFailureLeavesNothing) {
  std::string dir = test::temp_dir("stw");
  Tensor a = Tensor::from_f32({2, 2}, {1, 2, 3, 4});
  Tensor b = Tensor::from_f32({3}, {5, 6, 7}).to(DType::BF16);
  save_safetensors(dir + "/x.safetensors", {{"a", a}, {"b", b}}, {{"k", "v"}});
  SafeTensorsFile f(dir + "/x.safetensors");
  EXPECT_EQ(f.get("a").to_vector(), a.to_vector());
  EXPECT_EQ(f.get("b").dtype(), DType::BF16);
  EXPECT_EQ(f.get("b").to_vector(), (std::vector<float>{5, 6, 7}));
  EXPECT_EQ(f.metadata().at("k"), "v");
  EXPECT_THROW(save_safetensors(dir + "/missing/x.safetensors", {{"a", a}}), Error);
  EXPECT_FALSE(fs::exists(dir + "/missing"));
  fs::remove_all(dir);
}
