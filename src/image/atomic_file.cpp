#include "image/atomic_file.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "zimage/image.h"

namespace zimage {

namespace {

std::string os_error(int err) { return std::strerror(err); }

// The process umask, read without changing it (umask() would race with other threads).
mode_t current_umask() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("Umask:", 0) == 0) return mode_t(std::stoul(line.substr(6), nullptr, 8));
  return 022;
}

// Closes and removes the temporary file unless released.
struct TempFile {
  std::string path;
  int fd = -1;
  bool keep = false;
  ~TempFile() {
    if (fd >= 0) ::close(fd);
    if (!keep && !path.empty()) ::unlink(path.c_str());
  }
};

// Renames without replacing an existing target. Returns 0 or an errno value.
int rename_noreplace(const char* from, const char* to) {
  if (::renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0) return 0;
  int err = errno;
  if (err != EINVAL && err != ENOSYS) return err;
  // Filesystem without RENAME_NOREPLACE: link() also refuses an existing target.
  if (::link(from, to) != 0) return errno;
  ::unlink(from);
  return 0;
}

}  // namespace

namespace {

// The target must be absent or a regular file (and absent when overwriting is off).
void check_target(const std::string& path, bool overwrite) {
  namespace fs = std::filesystem;
  if (path.empty()) fail("[image] cannot write a file with an empty path");
  if (!fs::path(path).has_filename()) fail("[image] cannot write '", path, "': path names a directory");
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) fail("[image] cannot write '", path, "': it is a directory");
    if (!S_ISREG(st.st_mode))
      fail("[image] cannot write '", path, "': it exists and is not a regular file (a device, pipe or socket)");
    if (!overwrite) fail("[image] cannot write '", path, "': file exists (overwriting is off)");
  }
}

std::string folder_of(const std::string& path) {
  const std::filesystem::path p(path);
  return p.has_parent_path() ? p.parent_path().string() : ".";
}

// Creates "<dir>/.<name>.tmp-XXXXXX" with mode 0666 & ~umask; the caller owns tmp.
void create_temp(const std::string& path, TempFile& tmp) {
  const std::string dir = folder_of(path);
  std::string tmpl = dir + "/." + std::filesystem::path(path).filename().string() + ".tmp-XXXXXX";
  tmp.fd = ::mkstemp(tmpl.data());
  if (tmp.fd < 0) {
    int err = errno;
    fail("[image] cannot write '", path, "': cannot create a file in '", dir, "': ", os_error(err));
  }
  tmp.path = tmpl;
  if (::fchmod(tmp.fd, 0666 & ~current_umask()) != 0)
    fail("[image] cannot write '", path, "': chmod of '", tmp.path, "': ", os_error(errno));
}

// Writes, fsyncs and closes tmp.fd.
void write_temp(const std::string& path, TempFile& tmp, const void* data, size_t n) {
  const char* bytes = static_cast<const char*>(data);
  for (size_t done = 0; done < n;) {
    ssize_t w = ::write(tmp.fd, bytes + done, n - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("[image] cannot write '", path, "': writing '", tmp.path, "': ", os_error(errno));
    }
    done += size_t(w);
  }
  if (::fsync(tmp.fd) != 0) fail("[image] cannot write '", path, "': fsync: ", os_error(errno));
  int fd = tmp.fd;
  tmp.fd = -1;
  if (::close(fd) != 0) fail("[image] cannot write '", path, "': close: ", os_error(errno));
}

// Renames tmp to path (refusing an existing path when overwrite is off).
void rename_into_place(const std::string& tmp, const std::string& path, bool overwrite) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))  // appeared meanwhile
    fail("[image] cannot write '", path, "': it exists and is not a regular file");
  if (overwrite) {
    if (::rename(tmp.c_str(), path.c_str()) != 0)
      fail("[image] cannot write '", path, "': rename from '", tmp, "': ", os_error(errno));
  } else if (int err = rename_noreplace(tmp.c_str(), path.c_str())) {
    if (err == EEXIST) fail("[image] cannot write '", path, "': file exists (overwriting is off)");
    fail("[image] cannot write '", path, "': rename from '", tmp, "': ", os_error(err));
  }
}

// Makes renames durable (best effort: some filesystems refuse fsync on folders).
void sync_folder(const std::string& dir) {
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace

void write_file_atomic(const std::string& path, const void* data, size_t n, bool overwrite) {
  check_target(path, overwrite);
  TempFile tmp;
  create_temp(path, tmp);
  write_temp(path, tmp, data, n);
  rename_into_place(tmp.path, path, overwrite);
  tmp.keep = true;
  sync_folder(folder_of(path));
}

StagedFiles::~StagedFiles() {
  for (auto& e : entries_)
    if (!e.tmp.empty()) ::unlink(e.tmp.c_str());
}

void StagedFiles::add(const std::string& path, const void* data, size_t n) {
  check_target(path, overwrite_);
  TempFile tmp;
  create_temp(path, tmp);
  write_temp(path, tmp, data, n);
  entries_.push_back({path, tmp.path});
  tmp.keep = true;
}

std::string StagedFiles::reserve(const std::string& path) {
  check_target(path, overwrite_);
  TempFile tmp;
  create_temp(path, tmp);
  int fd = tmp.fd;
  tmp.fd = -1;
  if (::close(fd) != 0) fail("[image] cannot write '", path, "': close: ", os_error(errno));
  entries_.push_back({path, tmp.path});
  tmp.keep = true;
  return entries_.back().tmp;
}

void StagedFiles::commit() {
  const mode_t mode = 0666 & ~current_umask();
  for (auto& e : entries_)  // reserved files may have been replaced by the caller's own temporary file
    if (::chmod(e.tmp.c_str(), mode) != 0)
      fail("[image] cannot write '", e.path, "': chmod of '", e.tmp, "': ", os_error(errno));
  size_t done = 0;
  try {
    for (; done < entries_.size(); ++done) {
      rename_into_place(entries_[done].tmp, entries_[done].path, overwrite_);
      entries_[done].tmp.clear();
    }
  } catch (const Error&) {
    // Without overwriting, the targets renamed so far were new files: remove them again.
    if (!overwrite_)
      for (size_t i = 0; i < done; ++i) ::unlink(entries_[i].path.c_str());
    throw;
  }
  for (auto& e : entries_) sync_folder(folder_of(e.path));
}

std::string next_free_path(const std::string& path, int index) {
  namespace fs = std::filesystem;
  if (path.empty()) fail("[image] next_free_path: empty path");
  if (index < 0) fail("[image] next_free_path: negative index ", index);
  const fs::path p(path);
  const fs::path parent = p.parent_path();
  const std::string stem = p.stem().string(), ext = p.extension().string();
  for (long long i = index;; ++i) {
    fs::path cand = i == 0 ? p : parent / (stem + "-" + std::to_string(i) + ext);
    struct stat st;
    if (::lstat(cand.c_str(), &st) != 0) {
      if (errno == ENOENT) return cand.string();
      fail("[image] next_free_path: cannot check '", cand.string(), "': ", os_error(errno));
    }
    if (i - index > 1000000) fail("[image] next_free_path: no free name for '", path, "'");
  }
}

}  // namespace zimage
