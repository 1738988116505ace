// The generation parameter table (tools/cli/generation_params.cpp): it drives the options of
// `zimage generate` and `zimage serve`, the PNG metadata and --from-png, and docs/PARAMETERS.md is
// its printout (`zimage params`).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "util/test_util.h"
#include "zimage/image.h"

namespace fs = std::filesystem;
using namespace zimage;
using json = nlohmann::json;

namespace {

json table() {
  auto r = test::run_command({ZIMAGE_CLI_PATH, "params", "--json"});
  EXPECT_EQ(r.code, 0) << r.err;
  return json::parse(r.out);
}

// The long options "--x" that a --help text lists.
std::set<std::string> help_options(const std::string& sub) {
  auto r = test::run_command({ZIMAGE_CLI_PATH, sub, "--help"});
  EXPECT_EQ(r.code, 0) << r.err;
  std::set<std::string> out;
  std::regex opt(R"((?:^|[\s,])(--[a-z][a-z0-9-]*))");
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    // Option lines start with spaces and a dash; the help text after them may name other options.
    size_t first = line.find_first_not_of(' ');
    if (first == std::string::npos || line[first] != '-') continue;
    const std::string names = line.substr(first, line.find("  ", first) - first);
    for (std::sregex_iterator it(names.begin(), names.end(), opt), end; it != end; ++it) out.insert((*it)[1]);
  }
  return out;
}

TEST(ParamsTable, DocsAreTheTablesPrintout) {
  auto r = test::run_command(std::vector<std::string>{ZIMAGE_CLI_PATH, "params"});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string doc = std::string(ZIMAGE_FIXTURES_DIR) + "/../../docs/PARAMETERS.md";
  std::ifstream f(doc, std::ios::binary);
  ASSERT_TRUE(f) << doc;
  std::stringstream ss;
  ss << f.rdbuf();
  EXPECT_EQ(ss.str(), r.out)
      << "docs/PARAMETERS.md differs from the table: run ./build/zimage params > docs/PARAMETERS.md";
}

TEST(ParamsTable, EveryGenerateOptionIsARow) {
  std::set<std::string> rows;
  for (const auto& row : table()) rows.insert(row["option"].get<std::string>());
  for (const auto& o : help_options("generate"))
    if (o != "--help") {
      EXPECT_TRUE(rows.count(o)) << o << " is an option of zimage generate but not a row of the table";
    }
  for (const auto& o : rows) EXPECT_TRUE(help_options("generate").count(o)) << o << " is a row but not an option";
}

TEST(ParamsTable, ServeTakesTheRowsMarkedServe) {
  const auto serve = help_options("serve");
  for (const auto& row : table()) {
    const std::string o = row["option"].get<std::string>();
    if (o == "--quiet") continue;  // serve has a --quiet of its own (no log line per request)
    EXPECT_EQ(serve.count(o) == 1, row["serve"].get<bool>()) << row.dump();
  }
}

class ParamsRecord : public ::testing::Test {
 protected:
  std::string dir = test::temp_dir("cliparams");
  void TearDown() override { fs::remove_all(dir); }
};

// Every key the table records "always" is in a text-to-image PNG, and every recorded key of that PNG
// is a row's key (or one the seed row and the table add: noise, image index, generator, version).
TEST_F(ParamsRecord, APngHoldsExactlyTheTablesKeys) {
  auto r = test::run_command({ZIMAGE_CLI_PATH, "generate", "-q", "--dtype", "float32", "-m",
                              test::fixture("models/tiny-fp32"), "-p", "a cat", "-W", "32", "-H", "32", "-s", "1",
                              "--seed", "5", "-o", dir + "/a.png"});
  ASSERT_EQ(r.code, 0) << r.err;
  const json meta = json::parse(read_png_metadata(dir + "/a.png").at("zimage"));
  std::set<std::string> keys{"noise_batch_size", "noise_index", "image_index", "generator", "version"};
  for (const auto& row : table()) {
    if (row["key"].is_null()) continue;
    keys.insert(row["key"].get<std::string>());
    if (row["recorded_when"].get<std::string>().rfind("always", 0) == 0) {
      EXPECT_TRUE(meta.contains(row["key"].get<std::string>())) << row.dump() << "\n" << meta.dump();
    }
  }
  for (auto& [k, v] : meta.items())
    EXPECT_TRUE(keys.count(k)) << "the PNG records '" << k << "', no row of the table does";
}

// A value of every restored row, given on the command line, comes back from the PNG: the
// regenerated PNG records the same JSON.
TEST_F(ParamsRecord, FromPngRestoresEveryRestoredRow) {
  const std::string model = test::fixture("models/tiny-fp32");
  auto r = test::run_command({ZIMAGE_CLI_PATH,
                              "generate",
                              "-q",
                              "--dtype",
                              "float32",
                              "-m",
                              model,
                              "-p",
                              "a cat",
                              "-n",
                              "dull",
                              "-W",
                              "48",
                              "-H",
                              "32",
                              "-s",
                              "2",
                              "-g",
                              "1.5",
                              "--cfg-normalization",
                              "--cfg-truncation",
                              "0.8",
                              "--seed",
                              "77",
                              "--max-sequence-length",
                              "64",
                              "--vae-dtype",
                              "float32",
                              "--vae-tiling",
                              "off",
                              "--vae-tile-mode",
                              "diffusers",
                              "--vae-tile-size",
                              "32",
                              "-o",
                              dir + "/a.png"});
  ASSERT_EQ(r.code, 0) << r.err;
  r = test::run_command({ZIMAGE_CLI_PATH, "generate", "-q", "--from-png", dir + "/a.png", "-o", dir + "/b.png"});
  ASSERT_EQ(r.code, 0) << r.err;
  json a = json::parse(read_png_metadata(dir + "/a.png").at("zimage"));
  json b = json::parse(read_png_metadata(dir + "/b.png").at("zimage"));
  EXPECT_EQ(a, b);
  EXPECT_EQ(a["cfg_normalization"], true);
  EXPECT_EQ(a["vae_tile_mode"], "diffusers");
  EXPECT_EQ(a["negative_prompt"], "dull");
  EXPECT_EQ(a["max_sequence_length"], 64);
  std::ifstream fa(dir + "/a.png", std::ios::binary), fb(dir + "/b.png", std::ios::binary);
  std::stringstream sa, sb;
  sa << fa.rdbuf();
  sb << fb.rdbuf();
  EXPECT_TRUE(sa.str() == sb.str()) << "the regenerated PNG differs";
}

}  // namespace
