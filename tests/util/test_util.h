// Shared helpers for tests: fixture paths and reference loading.
#pragma once
#include <string>

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
// A float32 tensor of standard-normal values from std::mt19937(seed).
Tensor randn(Shape shape, uint32_t seed);

}  // namespace zimage::test
