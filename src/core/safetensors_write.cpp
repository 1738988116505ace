#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/safetensors.h"

namespace zimage {

void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t off = 0;
  for (auto& [name, t] : tensors) {
    const char* dt = t.dtype() == DType::F32 ? "F32" : t.dtype() == DType::BF16 ? "BF16" : "F16";
    h[name] = {{"dtype", dt}, {"shape", t.shape()}, {"data_offsets", {off, off + t.nbytes()}}};
    off += t.nbytes();
  }
  std::string header = h.dump();
  while ((header.size() + 8) % 8) header += ' ';
  std::filesystem::path p(path);
  std::string dir = p.parent_path().empty() ? "." : p.parent_path().string();
  std::string tmp = dir + "/." + p.filename().string() + ".tmp-XXXXXX";
  int fd = mkstemp(tmp.data());
  if (fd < 0) fail("[safetensors] cannot write '", path, "': ", std::strerror(errno));
  auto write_all = [&](const void* data, size_t n) {
    const char* c = static_cast<const char*>(data);
    while (n > 0) {
      ssize_t w = ::write(fd, c, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        int e = errno;
        ::close(fd);
        ::unlink(tmp.c_str());
        fail("[safetensors] writing '", path, "' failed: ", std::strerror(e));
      }
      c += w;
      n -= size_t(w);
    }
  };
  uint64_t n = header.size();
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = (n >> (8 * i)) & 0xff;
  write_all(len, 8);
  write_all(header.data(), header.size());
  for (auto& [name, t] : tensors) write_all(t.raw(), t.nbytes());
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    fail("[safetensors] writing '", path, "' failed: ", std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    fail("[safetensors] cannot write '", path, "': ", std::strerror(e));
  }
}

}  // namespace zimage
