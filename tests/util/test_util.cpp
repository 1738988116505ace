#include "util/test_util.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

namespace zimage::test {

Tensor randn(Shape shape, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> n(0.f, 1.f);
  Tensor t = Tensor::empty(DType::F32, std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = n(g);
  return t;
}

std::string fixture(const std::string& rel) {
  const std::string path = std::string(ZIMAGE_FIXTURES_DIR) + "/" + rel;
  // A lost fixture fails the test that needs it; it is never a silent skip.
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    ADD_FAILURE() << "missing test fixture " << path << " (tests/fixtures is committed)";
  return path;
}

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

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

CommandResult run_command(const std::string& command) {
  const std::string dir = temp_dir("run");
  const std::string out = dir + "/out", err = dir + "/err";
  // The braces redirect the whole command line (a pipeline or list too), not its last command.
  const std::string line = "{ " + command + "\n} >" + shell_quote(out) + " 2>" + shell_quote(err);
  const int st = std::system(line.c_str());
  CommandResult r;
  if (st == -1) ADD_FAILURE() << "cannot run a shell for: " << command;
  r.code = st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r.out = read_file(out);
  r.err = read_file(err);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return r;
}

CommandResult run_command(const std::vector<std::string>& argv, const std::string& prefix) {
  std::string cmd = prefix;
  for (const auto& a : argv) {  // appends, not "lit" + std::string&& (GCC 12 -Wrestrict false positive, bug 105329)
    if (!cmd.empty()) cmd += ' ';
    cmd += shell_quote(a);
  }
  return run_command(cmd);
}

}  // namespace zimage::test
