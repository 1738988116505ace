#include "core/mapping.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

namespace zimage {
namespace {

uintptr_t page_size() { return uintptr_t(sysconf(_SC_PAGESIZE)); }

struct Vma {
  uintptr_t lo = 0, hi = 0;
  bool read_only_private = false;
  unsigned dev_major = 0, dev_minor = 0;
  unsigned long inode = 0;
};

// This process's mappings (/proc/self/maps); empty when it cannot be read.
std::vector<Vma> mappings() {
  std::vector<Vma> out;
  std::FILE* f = std::fopen("/proc/self/maps", "r");
  if (!f) return out;
  char line[4096];
  while (std::fgets(line, sizeof line, f)) {
    unsigned long lo = 0, hi = 0, off = 0, inode = 0;
    unsigned maj = 0, min = 0;
    char perms[8] = {0};
    if (std::sscanf(line, "%lx-%lx %7s %lx %x:%x %lu", &lo, &hi, perms, &off, &maj, &min, &inode) != 7) continue;
    out.push_back({lo, hi, inode != 0 && perms[1] == '-' && perms[3] == 'p', maj, min, inode});
  }
  std::fclose(f);
  return out;
}

// The mappings of the file `path` (by device and inode).
std::vector<Vma> mappings_of(const std::string& path) {
  std::vector<Vma> out;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return out;
  for (const Vma& v : mappings())
    if (v.inode == st.st_ino && v.dev_major == major(st.st_dev) && v.dev_minor == minor(st.st_dev)) out.push_back(v);
  return out;
}

}  // namespace

size_t release_file_pages(const void* p, size_t n) {
  const uintptr_t page = page_size();
  const uintptr_t a = reinterpret_cast<uintptr_t>(p), begin = (a + page - 1) & ~(page - 1), end = (a + n) & ~(page - 1);
  if (!p || begin >= end) return 0;
  for (const Vma& v : mappings()) {
    if (begin >= v.lo && end <= v.hi) {
      if (!v.read_only_private) return 0;
      return madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED) == 0 ? size_t(end - begin) : 0;
    }
  }
  return 0;
}

size_t release_file_mappings(const std::string& path) {
  size_t bytes = 0;
  for (const Vma& v : mappings_of(path))
    if (v.read_only_private && madvise(reinterpret_cast<void*>(v.lo), v.hi - v.lo, MADV_DONTNEED) == 0)
      bytes += v.hi - v.lo;
  return bytes;
}

size_t resident_bytes(const void* p, size_t n) {
  const uintptr_t page = page_size();
  const uintptr_t a = reinterpret_cast<uintptr_t>(p), begin = a & ~(page - 1), end = (a + n + page - 1) & ~(page - 1);
  if (!p || begin >= end) return 0;
  const int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  size_t present = 0;
  std::vector<uint64_t> entries(4096);
  for (uintptr_t at = begin; at < end;) {
    const size_t pages = std::min<size_t>(entries.size(), size_t((end - at) / page));
    const ssize_t got = ::pread(fd, entries.data(), pages * 8, off_t(at / page * 8));
    if (got <= 0) break;
    const size_t k = size_t(got) / 8;
    for (size_t i = 0; i < k; ++i)
      if (entries[i] >> 63) ++present;  // bit 63: page present in RAM
    at += k * page;
  }
  ::close(fd);
  return present * page;
}

size_t resident_file_bytes(const std::string& path) {
  size_t bytes = 0;
  for (const Vma& v : mappings_of(path)) bytes += resident_bytes(reinterpret_cast<const void*>(v.lo), v.hi - v.lo);
  return bytes;
}

}  // namespace zimage
