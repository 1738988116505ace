#include "util/test_util.h"

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

namespace zimage::test {

std::string fixture(const std::string& rel) { return std::string(ZIMAGE_FIXTURES_DIR) + "/" + rel; }

std::string temp_dir(const std::string& tag) {
  std::random_device rd;
  auto p = std::filesystem::temp_directory_path() / ("zimage_test_" + tag + "_" + std::to_string(rd()));
  std::filesystem::create_directories(p);
  return p.string();
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

}  // namespace zimage::test
