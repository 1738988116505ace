// Shared helpers for tests: fixture paths and reference loading.
#pragma once
#include <string>
#include <vector>

#include "core/safetensors.h"
#include "core/tensor.h"

namespace zimage::test {

// Absolute path of a file under tests/fixtures; a missing one fails the calling test.
std::string fixture(const std::string& rel);
// A fresh empty temporary folder (removed by the OS tmp cleaner; tests clean up their own files).
std::string temp_dir(const std::string& tag);
// Reads a whole file.
std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& bytes);
// `s` as one POSIX shell word (single-quoted), for the tests that run the CLI through a shell.
std::string shell_quote(const std::string& s);

// What run_command saw: the exit status (128 + the signal when one ended the command), stdout
// and stderr.
struct CommandResult {
  int code = 0;
  std::string out, err;
};
// Runs `command`, one POSIX shell command line (quote its words with shell_quote), with stdout
// and stderr captured (stdin is inherited).
CommandResult run_command(const std::string& command);
// The same with `argv` quoted word by word after `prefix`, e.g. run_command({cli, "info", dir},
// "timeout 120") or an environment assignment "HF_HOME=/x".
CommandResult run_command(const std::vector<std::string>& argv, const std::string& prefix = "");
// A float32 tensor of standard-normal values from std::mt19937(seed).
Tensor randn(Shape shape, uint32_t seed);

// The message of the zimage::Error that f() throws, or "(no error)" when it throws none.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace zimage::test
