// GGUF reader: the fixture written by the `gguf` Python package reads back (metadata, tensor
// infos) and dequantizes bit-identically to gguf.quants.dequantize; every malformed file of
// llama.cpp's bad-file cases that applies is a clear Error, never a crash or a huge allocation.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/gguf.h"
#include "core/safetensors.h"
#include "util/test_util.h"

using namespace zimage;
namespace fs = std::filesystem;

namespace {

// Little-endian GGUF bytes, piece by piece.
struct Bytes {
  std::string s;
  Bytes& u32(uint32_t v) { return raw(&v, 4); }
  Bytes& u64(uint64_t v) { return raw(&v, 8); }
  Bytes& i64(int64_t v) { return raw(&v, 8); }
  Bytes& u8(uint8_t v) { return raw(&v, 1); }
  Bytes& str(const std::string& t) {
    u64(t.size());
    s += t;
    return *this;
  }
  Bytes& raw(const void* p, size_t n) {
    s.append(static_cast<const char*>(p), n);
    return *this;
  }
};

struct TI {
  std::string name;
  std::vector<int64_t> ne;
  uint32_t type;
  uint64_t offset;
};

// A GGUF v3 file: header, the key/values (already encoded, `n_kv` of them), tensor infos,
// padding to `align`, then `data_len` bytes of data.
std::string gguf_file(const std::string& kvs, uint64_t n_kv, const std::vector<TI>& ts, uint64_t data_len,
                      uint64_t align = 32, uint32_t version = 3) {
  Bytes b;
  b.s = "GGUF";
  b.u32(version).u64(ts.size()).u64(n_kv);
  b.s += kvs;
  for (const TI& t : ts) {
    b.str(t.name).u32(uint32_t(t.ne.size()));
    for (int64_t d : t.ne) b.i64(d);
    b.u32(t.type).u64(t.offset);
  }
  while (b.s.size() % align) b.s += '\0';
  b.s += std::string(size_t(data_len), '\x01');
  return b.s;
}

// Two tensors: "a" f32 [4] at 0 (16 bytes), "b" Q8_0 [2, 32] at 32 (68 bytes).
std::vector<TI> good_tensors() { return {{"a", {4}, 0, 0}, {"b", {32, 2}, 8, 32}}; }
std::string kv_str(const std::string& k, const std::string& v) { return Bytes().str(k).u32(8).str(v).s; }
std::string good_file() { return gguf_file(kv_str("general.architecture", "x"), 1, good_tensors(), 100); }

gguf::File parse(const std::string& bytes) {
  auto keep = std::make_shared<std::string>(bytes);
  return gguf::File(keep, reinterpret_cast<const uint8_t*>(keep->data()), keep->size(), "mem.gguf");
}

// Expects parsing to throw an Error naming the file and containing `what`.
void expect_bad(const std::string& bytes, const std::string& what) {
  try {
    parse(bytes);
    FAIL() << "no error (expected: " << what << ")";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.rfind("gguf: mem.gguf: ", 0), 0u) << m;
    EXPECT_NE(m.find(what), std::string::npos) << m;
  }
}

bool same_bits_or_both_nan(float a, float b) {
  uint32_t x, y;
  std::memcpy(&x, &a, 4);
  std::memcpy(&y, &b, 4);
  return x == y || (std::isnan(a) && std::isnan(b));
}

}  // namespace

TEST(GgufReader, GoodFileParses) {
  gguf::File f = parse(good_file());
  EXPECT_EQ(f.version(), 3u);
  ASSERT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.metadata().at("general.architecture").s, "x");
  const gguf::TensorInfo* b = f.find("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->shape(), (Shape{2, 32}));
  EXPECT_EQ(b->nbytes, 68u);
  EXPECT_EQ(f.data_offset() % 32, 0u);
  EXPECT_EQ(f.find("nope"), nullptr);
}

TEST(GgufReader, FixtureMetadataAndTensorInfos) {
  gguf::File f(test::fixture("gguf/quants.gguf"));
  EXPECT_EQ(f.version(), 3u);
  const auto& kv = f.metadata();
  EXPECT_EQ(kv.at("general.architecture").s, "zimage-test");
  EXPECT_EQ(kv.at("test.u32").u, 4000000000u);
  EXPECT_EQ(kv.at("test.i32").i, -7);
  EXPECT_EQ(kv.at("test.f32").f, 0.5);
  EXPECT_EQ(kv.at("test.bool").u, 1u);
  EXPECT_EQ(kv.at("test.str").s, "hello gguf");
  EXPECT_EQ(kv.at("test.strs").strings, (std::vector<std::string>{"a", "bc", ""}));
  EXPECT_EQ(kv.at("test.ints").count, 3u);
  const gguf::TensorInfo* t = f.find("q.Q4_K.bytes");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->shape(), (Shape{3, 2, 256}));
  EXPECT_EQ(gguf::type_name(t->type), "Q4_K");
}

// Every type's dequantisation against gguf.quants.dequantize, bit for bit (NaN: NaN).
TEST(GgufDequantParity, BitIdenticalToGgufPackage) {
  gguf::File f(test::fixture("gguf/quants.gguf"));
  SafeTensorsFile ref(test::fixture("gguf/quants_ref.safetensors"));
  int checked = 0;
  for (const char* type : {"F32", "F16", "BF16", "Q8_0", "Q5_0", "Q4_0", "Q6_K", "Q5_K", "Q4_K", "Q3_K", "Q2_K"}) {
    for (const char* kind : {"values", "bytes"}) {
      const std::string name = std::string("q.") + type + "." + kind;
      if (!ref.has(name)) continue;
      SCOPED_TRACE(name);
      const Tensor want = ref.get(name);
      const Tensor got = f.dequantize(name);
      ASSERT_EQ(got.shape(), want.shape());
      const float* g = got.f32();
      const float* w = want.f32();
      int64_t mismatches = 0;
      for (int64_t i = 0; i < got.numel(); ++i) mismatches += !same_bits_or_both_nan(g[i], w[i]);
      EXPECT_EQ(mismatches, 0);
      ++checked;
    }
  }
  EXPECT_EQ(checked, 17);  // 11 random-bytes cases + 6 quantized-values cases
}

TEST(GgufReader, UnsupportedTypeIsAnError) {
  // Q4_1 (3) is a valid type the engine does not dequantize.
  gguf::File f = parse(gguf_file("", 0, {{"q", {32}, 3, 0}}, 20));
  try {
    f.dequantize("q");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'q' has type Q4_1 (supported: F32"), std::string::npos) << e.what();
  }
  EXPECT_THROW(f.dequantize("missing"), Error);
}

TEST(GgufBad, EveryTruncationIsAnError) {
  const std::string good = good_file();
  parse(good);
  for (size_t n = 0; n < good.size(); ++n) {  // the tensors end exactly at the end of the file
    SCOPED_TRACE(n);
    EXPECT_THROW(parse(good.substr(0, n)), Error);
  }
}

TEST(GgufBad, Header) {
  expect_bad("", "not a GGUF file");
  expect_bad("GGML" + good_file().substr(4), "not a GGUF file");
  std::string g = good_file();
  auto with_version = [&](uint32_t v) {
    std::string s = g;
    std::memcpy(&s[4], &v, 4);
    return s;
  };
  expect_bad(with_version(1), "GGUF version 1 is not supported");
  expect_bad(with_version(4), "unknown GGUF version 4");
  expect_bad(with_version(0x03000000u), "big-endian GGUF files are not supported");
  expect_bad(g.substr(0, 6), "truncated: the version needs 4 bytes at offset 4");
  EXPECT_EQ(parse(gguf_file("", 0, {}, 0, 32, 2)).version(), 2u);  // version 2 is fine
}

TEST(GgufBad, HugeCounts) {
  for (uint64_t n : {uint64_t(1) << 40, ~uint64_t(0), uint64_t(1) << 63}) {
    std::string f = good_file();
    std::string t = f, k = f;
    std::memcpy(&t[8], &n, 8);
    std::memcpy(&k[16], &n, 8);
    expect_bad(t, "tensor count " + std::to_string(n) + " cannot fit");
    expect_bad(k, "metadata count " + std::to_string(n) + " cannot fit");
  }
}

TEST(GgufBad, Metadata) {
  const std::vector<TI> none;
  // a key whose length runs past the end
  expect_bad(gguf_file(Bytes().u64(uint64_t(1) << 62).s + std::string(32, 'k'), 1, none, 0),
             "truncated: a metadata key");
  expect_bad(gguf_file(Bytes().str("").u32(4).u32(1).s, 1, none, 0), "metadata key #0 is empty");
  expect_bad(gguf_file(kv_str("k", "v") + kv_str("k", "w"), 2, none, 0), "duplicate metadata key 'k'");
  expect_bad(gguf_file(Bytes().str("k").u32(13).u32(0).s, 1, none, 0), "metadata 'k' has unknown type 13");
  expect_bad(gguf_file(Bytes().str("k").u32(7).u8(2).s, 1, none, 0), "metadata 'k' has bool value 2");
  // a string value whose length runs past the end
  expect_bad(gguf_file(Bytes().str("k").u32(8).u64(~uint64_t(0)).s + "abc", 1, none, 0), "truncated: a string value");
  // arrays: unknown element type, nested, a count past the end (scalars and strings)
  expect_bad(gguf_file(Bytes().str("k").u32(9).u32(99).u64(1).s, 1, none, 0), "array of unknown type 99");
  expect_bad(gguf_file(Bytes().str("k").u32(9).u32(9).u64(1).s, 1, none, 0), "array of arrays");
  expect_bad(gguf_file(Bytes().str("k").u32(9).u32(10).u64(uint64_t(1) << 61).u64(5).s, 1, none, 0),
             "array of 2305843009213693952 uint64 runs past the end");
  expect_bad(gguf_file(Bytes().str("k").u32(9).u32(8).u64(~uint64_t(0)).s + std::string(64, 'x'), 1, none, 0),
             "strings runs past the end");
}

TEST(GgufBad, Alignment) {
  auto with_align = [](uint32_t type, uint64_t v) {
    Bytes b;
    b.str("general.alignment").u32(type);
    if (type == 4)
      b.u32(uint32_t(v));
    else
      b.u64(v);
    return gguf_file(b.s, 1, {{"a", {4}, 0, 0}}, 16, type == 4 && v == 64 ? 64 : 32);
  };
  expect_bad(with_align(4, 0), "general.alignment 0 is not a power of two");
  expect_bad(with_align(4, 3), "general.alignment 3 is not a power of two");
  expect_bad(with_align(4, uint64_t(1) << 31), "is not a power of two between 1 and");
  expect_bad(with_align(10, 32), "general.alignment has type uint64 (must be uint32)");
  gguf::File f = parse(with_align(4, 64));
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.data_offset() % 64, 0u);
}

TEST(GgufBad, TensorInfos) {
  auto one = [](TI t, uint64_t data = 4096) { return gguf_file("", 0, {t}, data); };
  expect_bad(one({"", {4}, 0, 0}), "tensor #0 has an empty name");
  expect_bad(one({"t", {}, 0, 0}), "tensor 't' has 0 dimensions (1 to 4 are allowed)");
  expect_bad(one({"t", {1, 1, 1, 1, 1}, 0, 0}), "tensor 't' has 5 dimensions");
  expect_bad(one({"t", {4, -1}, 0, 0}), "tensor 't' has negative dimension -1");
  expect_bad(one({"t", {int64_t(1) << 62, 4}, 0, 0}), "tensor 't' has more than 2^63 elements");
  expect_bad(one({"t", {int64_t(1) << 32, int64_t(1) << 32}, 0, 0}), "more than 2^63 elements");
  // within 2^63 elements but not bytes
  expect_bad(one({"t", {int64_t(1) << 61, 2}, 0, 0}), "tensor 't' is too large (F32)");
  expect_bad(one({"t", {4}, 4, 0}), "tensor 't' has unknown ggml type 4");
  expect_bad(one({"t", {4}, 1000, 0}), "unknown ggml type 1000");
  expect_bad(one({"t", {48}, 8, 0}), "tensor 't' has row length 48, not a multiple of the Q8_0 block size 32");
  expect_bad(one({"t", {4}, 0, 16}), "tensor 't' offset 16 is not a multiple of the alignment 32");
  expect_bad(one({"t", {4}, 0, 4096}),
             "tensor 't' (16 bytes at data offset 4096) runs past the end of the 4096-byte data section");
  EXPECT_EQ(parse(one({"t", {1024}, 0, 0})).find("t")->nbytes, 4096u);  // exactly fills the data section
  expect_bad(one({"t", {1025}, 0, 0}), "tensor 't' (4100 bytes at data offset 0) runs past the end");
  // offset + size would wrap around 2^64
  expect_bad(one({"t", {64}, 0, ~uint64_t(31)}), "runs past the end");
  expect_bad(gguf_file("", 0, {{"t", {4}, 0, 0}, {"t", {4}, 0, 32}}, 64), "duplicate tensor name 't'");
  expect_bad(gguf_file("", 0, {{"a", {16}, 0, 0}, {"b", {4}, 0, 32}}, 64),
             "tensor 'b' at data offset 32 overlaps tensor 'a' (0 .. 64)");
  expect_bad(gguf_file("", 0, {{"a", {4}, 0, 0}, {"b", {4}, 0, 0}}, 64), "overlaps");
  // a data section that would start past the end of the file
  const std::string f = gguf_file("", 0, {{"a", {4}, 0, 0}}, 0);
  expect_bad(f, "tensor 'a' (16 bytes at data offset 0) runs past the end of the 0-byte data section");
  expect_bad(f.substr(0, 57), "data section would start at 64, past the end of the 57-byte file");
}

TEST(GgufBad, NotARegularFile) {
  const std::string dir = test::temp_dir("gguf");
  try {
    gguf::File f(dir);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir), std::string::npos) << e.what();
  }
  test::write_file(dir + "/empty.gguf", "");
  EXPECT_THROW(gguf::File(dir + "/empty.gguf"), Error);
  fs::remove_all(dir);
}

// WeightStore over a GGUF file, with the key conversion's aliases: row ranges of a quantized and
// of a float tensor are views of the right bytes.
TEST(GgufWeightStore, AliasesAndRowRanges) {
  const std::string dir = test::temp_dir("gguf-ws");
  // q: Q8_0 [6, 64] (row = 2 blocks = 68 bytes), f: F32 [6, 4], n: F32 [3]
  std::string q(6 * 68, '\0');
  for (size_t i = 0; i < q.size(); ++i) q[i] = char((i * 7 + 3) & 0x7F);
  for (size_t b = 0; b < 12; ++b) q[b * 34] = 0, q[b * 34 + 1] = 0x20;  // d = 2^-7 (f16 0x2000)
  std::vector<float> f(24);
  for (size_t i = 0; i < f.size(); ++i) f[i] = float(i);
  const std::string path = dir + "/w.gguf";
  test::write_file(path, gguf_file("", 0, {{"q", {64, 6}, 8, 0}, {"f", {4, 6}, 0, 416}, {"n", {3}, 0, 512}}, 524));
  {  // fill the data section: q at 0, f at 416, n at 512
    std::string bytes = test::read_file(path);
    const size_t start = bytes.size() - 524;
    bytes.replace(start, q.size(), q);
    bytes.replace(start + 416, 96, std::string(reinterpret_cast<const char*>(f.data()), 96));
    test::write_file(path, bytes);
  }
  WeightStore ws = WeightStore::open_file(path);
  EXPECT_TRUE(ws.is_quantized("q"));
  EXPECT_FALSE(ws.is_quantized("f"));
  EXPECT_THROW(ws.get("q"), Error);
  ws.alias("q", "q.mid", 2, 3);
  ws.alias("f", "f.tail", 4, 2);
  ws.alias("n", "n2");
  ws.hide("f");
  EXPECT_EQ(ws.names(), (std::vector<std::string>{"f.tail", "n2", "q.mid"}));
  EXPECT_FALSE(ws.has("q"));
  EXPECT_FALSE(ws.has("f"));
  EXPECT_EQ(ws.info("q.mid").shape, (Shape{3, 64}));
  const QuantizedTensor qm = ws.quantized("q.mid", {3, 64});
  EXPECT_EQ(qm.nbytes, 3u * 68);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(qm.data), qm.nbytes), q.substr(2 * 68, 3 * 68));
  EXPECT_THROW(ws.quantized("q.mid", {2, 64}), Error);
  const Tensor ft = ws.get("f.tail", {2, 4});
  EXPECT_EQ(ft.to_vector(), (std::vector<float>{16, 17, 18, 19, 20, 21, 22, 23}));
  EXPECT_EQ(ws.get("n2").shape(), (Shape{3}));
  EXPECT_THROW(ws.alias("f", "x", 5, 2), Error);  // rows 5 .. 7 of 6
  EXPECT_THROW(ws.alias("missing", "x"), Error);
  EXPECT_THROW(ws.get("q"), Error);
  fs::remove_all(dir);
}
