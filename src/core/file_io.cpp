#include "core/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace zimage {

std::string file_kind(unsigned mode) {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return "";
    case S_IFDIR:
      return "a directory";
    case S_IFIFO:
      return "a FIFO (named pipe)";
    case S_IFSOCK:
      return "a socket";
    case S_IFCHR:
      return "a character device";
    case S_IFBLK:
      return "a block device";
    default:
      return "a special file";
  }
}

RegularFile::RegularFile(const std::string& path, const std::string& prefix) {
  // O_NONBLOCK: opening a FIFO for reading does not wait for a writer; fstat on the descriptor
  // then tells what was opened (no window between a check and the open).
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd_ < 0) fail(prefix, path, ": cannot open (", std::strerror(errno), ")");
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    const int e = errno;
    ::close(fd_);
    fail(prefix, path, ": cannot stat (", std::strerror(e), ")");
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd_);
    fail(prefix, path, ": is ", file_kind(unsigned(st.st_mode)), ", not a regular file");
  }
  // Back to blocking reads (a regular file never blocks, but keep the descriptor ordinary).
  const int fl = ::fcntl(fd_, F_GETFL);
  if (fl >= 0) ::fcntl(fd_, F_SETFL, fl & ~O_NONBLOCK);
  size_ = uint64_t(st.st_size);
}

RegularFile::~RegularFile() {
  if (fd_ >= 0) ::close(fd_);
}

std::string read_regular_file(const std::string& path, uint64_t max_bytes, const std::string& prefix) {
  RegularFile f(path, prefix);
  if (f.size() > max_bytes)
    fail(prefix, path, ": file is ", f.size(), " bytes, more than the ", max_bytes, "-byte limit for this file");
  std::string out(size_t(f.size()), '\0');
  size_t got = 0;
  while (got < out.size()) {
    const ssize_t n = ::read(f.fd(), out.data() + got, out.size() - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(prefix, path, ": read failed (", std::strerror(errno), ")");
    }
    if (n == 0) break;  // shrank while reading
    got += size_t(n);
  }
  out.resize(got);
  return out;
}

namespace {
struct TooDeep {};
}  // namespace

nlohmann::json parse_json_text(std::string_view text, const std::string& origin, const std::string& prefix,
                               const JsonKeyHook& on_key) {
  using json = nlohmann::json;
  try {
    return json::parse(text.begin(), text.end(), [&](int depth, json::parse_event_t ev, json& v) {
      if ((ev == json::parse_event_t::object_start || ev == json::parse_event_t::array_start) && depth >= kMaxJsonDepth)
        throw TooDeep{};
      if (ev == json::parse_event_t::key && on_key) on_key(depth, v.get<std::string>());
      return true;
    });
  } catch (const TooDeep&) {
    fail(prefix, origin, ": JSON nested deeper than ", kMaxJsonDepth, " levels (arrays/objects)");
  } catch (const json::exception& e) {
    fail(prefix, origin, ": not valid JSON (", e.what(), ")");
  }
}

std::string json_excerpt(const nlohmann::json& v, size_t max_chars) {
  std::string s = v.dump();
  return s.size() > max_chars ? s.substr(0, max_chars > 3 ? max_chars - 3 : 0) + "..." : s;
}

nlohmann::json parse_json_file(const std::string& path, const std::string& prefix, uint64_t max_bytes) {
  return parse_json_text(read_regular_file(path, max_bytes, prefix), path, prefix);
}

}  // namespace zimage
