// Shared helpers of the libFuzzer targets (fuzz/*_fuzz.cpp).
//
// The parsers under test read files by path, so a target writes each input to a file in a
// private temporary folder (made once per process, removed at exit) and calls the real entry
// point. zimage::Error is the expected answer to bad bytes; the ZIMAGE_FUZZ_CATCH macro swallows
// only that. Any other exception escapes LLVMFuzzerTestOneInput and libFuzzer reports it as a
// crash ("deadly signal" after std::terminate), as it does for sanitizer reports, timeouts and
// out-of-memory.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "core/error.h"

namespace zimage::fuzz {

// A private folder under $TMPDIR (default /tmp), removed when the process exits normally.
class ScratchDir {
 public:
  ScratchDir() {
    const char* t = std::getenv("TMPDIR");
    std::string tmpl = std::string(t && *t ? t : "/tmp") + "/zimage-fuzz-XXXXXX";
    if (!mkdtemp(tmpl.data())) {
      std::perror("zimage fuzz: mkdtemp");
      std::abort();
    }
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The process-wide scratch folder (created on first use).
inline const ScratchDir& scratch() {
  static ScratchDir d;
  return d;
}

// Replaces `path` with exactly `bytes` (aborts on an I/O error: that is the harness, not a finding).
inline void write_file(const std::string& path, std::string_view bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
  f.close();
  if (!f) {
    std::fprintf(stderr, "zimage fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
}

inline std::string_view as_view(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Reads every byte (through a volatile sink, so the loads stay): ASan checks they are in bounds.
inline void touch(const void* p, size_t n) {
  const unsigned char* b = static_cast<const unsigned char*>(p);
  unsigned sum = 0;
  for (size_t i = 0; i < n; ++i) sum += b[i];
  [[maybe_unused]] static volatile unsigned sink;
  sink = sum;
}

// A property the code under test promises did not hold: report it as a crash with a message.
[[noreturn]] inline void finding(const char* what) {
  std::fprintf(stderr, "zimage fuzz: property violated: %s\n", what);
  std::abort();
}
#define ZIMAGE_FUZZ_CHECK(cond)                                    \
  do {                                                             \
    if (!(cond)) ::zimage::fuzz::finding(#cond " (" __FILE__ ")"); \
  } while (0)

// An Error must say what went wrong: an empty message is a finding too.
// ZIMAGE_FUZZ_VERBOSE=1 prints each one (to see where a seed stops).
inline void check_error_text(const zimage::Error& e) {
  const std::string_view w = e.what();
  if (w.empty()) finding("zimage::Error with an empty message");
  static const bool verbose = std::getenv("ZIMAGE_FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "zimage::Error: %s\n", e.what());
}

}  // namespace zimage::fuzz

// Runs the statement; a zimage::Error (bad input, reported properly) is the expected outcome.
#define ZIMAGE_FUZZ_EXPECT_ERRORS(...)   \
  try {                                  \
    __VA_ARGS__;                         \
  } catch (const ::zimage::Error& e) {   \
    ::zimage::fuzz::check_error_text(e); \
  }
