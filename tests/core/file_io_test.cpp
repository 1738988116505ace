// Reading untrusted files: only regular files (a FIFO is an error, not a hang), bounded JSON
// nesting, and errors that name the file.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/file_io.h"
#include "core/safetensors.h"
#include "util/test_util.h"

using namespace zimage;
namespace fs = std::filesystem;

namespace {

void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing '" << parts.front() << "'";
  } catch (const Error& e) {
    for (auto& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << "'" << p << "' not in: " << e.what();
  }
}

std::string nested(int depth) {
  return "{\"x\": " + std::string(size_t(depth), '[') + std::string(size_t(depth), ']') + "}";
}

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[size_t(i)] = char((n >> (8 * i)) & 0xff);
  return s;
}

class FileIo : public ::testing::Test {
 protected:
  std::string dir = test::temp_dir("file_io");
  void TearDown() override { fs::remove_all(dir); }
};

}  // namespace

TEST_F(FileIo, ConfigNestedTooDeepNamesTheFile) {
  const std::string p = dir + "/config.json";
  test::write_file(p, nested(100000));
  expect_error([&] { JsonConfig::load(p); }, {"config: ", p, "JSON nested deeper than 128 levels"});
  test::write_file(p, nested(kMaxJsonDepth));  // 1 object + 128 arrays: one level too deep
  expect_error([&] { JsonConfig::load(p); }, {"nested deeper than 128"});
  test::write_file(p, nested(kMaxJsonDepth - 1));  // exactly 128 levels: accepted
  EXPECT_TRUE(JsonConfig::load(p).has("x"));
}

TEST_F(FileIo, SafetensorsHeaderNestedTooDeep) {
  const std::string h = "{\"__metadata__\": " + std::string(5000, '[') + std::string(5000, ']') + "}";
  const std::string p = dir + "/deep.safetensors";
  test::write_file(p, le64(h.size()) + h);
  expect_error([&] { SafeTensorsFile f(p); }, {p, "nested deeper than 128"});
}

TEST_F(FileIo, FifoIsRefusedWithoutBlocking) {
  const std::string p = dir + "/fifo";
  ASSERT_EQ(mkfifo(p.c_str(), 0600), 0);
  expect_error([&] { JsonConfig::load(p); }, {p, "is a FIFO (named pipe), not a regular file"});
  expect_error([&] { SafeTensorsFile f(p); }, {p, "is a FIFO"});
  expect_error([&] { read_regular_file(p, 100, "[x] "); }, {"[x] ", p, "is a FIFO"});
  // A weights folder whose single file or index is a FIFO.
  const std::string w = dir + "/w";
  fs::create_directories(w);
  ASSERT_EQ(mkfifo((w + "/model.safetensors").c_str(), 0600), 0);
  expect_error([&] { WeightStore::open_dir(w); }, {"model.safetensors", "is a FIFO"});
  fs::remove(w + "/model.safetensors");
  ASSERT_EQ(mkfifo((w + "/model.safetensors.index.json").c_str(), 0600), 0);
  expect_error([&] { WeightStore::open_dir(w); }, {"model.safetensors.index.json", "is a FIFO"});
}

TEST_F(FileIo, DirectoryIsRefusedByName) {
  const std::string p = dir + "/config.json";
  fs::create_directory(p);
  expect_error([&] { JsonConfig::load(p); }, {p, "is a directory, not a regular file"});
  expect_error([&] { WeightStore::open_dir(dir + "/config.json/x"); }, {"does not exist"});
  test::write_file(dir + "/file", "x");
  expect_error([&] { WeightStore::open_dir(dir + "/file"); }, {"is not a folder"});
}

TEST_F(FileIo, SizeLimitIsCheckedBeforeReading) {
  const std::string p = dir + "/big.json";
  test::write_file(p, std::string(1000, ' ') + "{}");
  expect_error([&] { read_regular_file(p, 100, "[x] "); }, {p, "1002 bytes, more than the 100-byte limit"});
  EXPECT_EQ(read_regular_file(p, 2000, "[x] ").size(), 1002u);
}

TEST_F(FileIo, ConfigIntegerBeyondInt64IsAnError) {
  const std::string p = dir + "/config.json";
  test::write_file(p, R"({"n": 18446744073709551615, "l": [1, 18446744073709551615]})");
  JsonConfig c = JsonConfig::load(p);
  expect_error([&] { c.get_int("n"); }, {p, "'n'", "18446744073709551615", "too large"});
  expect_error([&] { c.get_int_list("l"); }, {p, "'l'", "list of integers"});
}

TEST_F(FileIo, DataOffsetsErrorsSayWhatIsWrong) {
  auto write = [&](const std::string& offsets) {
    const std::string h = R"({"t":{"dtype":"F32","shape":[1],"data_offsets":)" + offsets + "}}";
    const std::string p = dir + "/o.safetensors";
    test::write_file(p, le64(h.size()) + h + std::string(4, '\0'));
    return p;
  };
  expect_error([&] { SafeTensorsFile f(write("[-1,4]")); },
               {"tensor 't' has data_offsets [-1,4]: begin -1 is not a non-negative integer"});
  expect_error([&] { SafeTensorsFile f(write("[0,4.5]")); },
               {"tensor 't' has data_offsets [0,4.5]: end 4.5 is not a non-negative integer"});
  expect_error([&] { SafeTensorsFile f(write("[\"0\",4]")); }, {"begin \"0\" is not a non-negative integer"});
  expect_error([&] { SafeTensorsFile f(write("[0]")); },
               {"tensor 't' has data_offsets [0], expected a [begin, end] pair"});
  const std::string h = R"({"t":{"dtype":"F32","shape":[1]}})";
  test::write_file(dir + "/n.safetensors", le64(h.size()) + h);
  expect_error([&] { SafeTensorsFile f(dir + "/n.safetensors"); }, {"tensor 't' has no data_offsets"});
}

TEST_F(FileIo, WeightStoreCheckReadsHeadersOnly) {
  const std::string h =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"i":{"dtype":"I32","shape":[1],"data_offsets":[8,12]}})";
  test::write_file(dir + "/model.safetensors", le64(h.size()) + h + std::string(12, '\0'));
  WeightStore ws = WeightStore::open_dir(dir);
  ws.check({{"a", {2}}});
  expect_error([&] { ws.check({{"a", {3}}}); }, {"tensor 'a' has shape [2], expected [3]"});
  expect_error([&] { ws.check({{"b", {2}}}); }, {"missing tensor 'b'"});
  expect_error([&] { ws.check({{"i", {1}}}); }, {"tensor 'i' has dtype I32"});
}
