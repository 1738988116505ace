// Resident pages of memory-mapped weight files, and giving them back.
//
// A weight file (GGUF) is mapped read-only and private: its pages are the page cache's, mapped
// into this process when touched and counted in its resident set (RSS) until unmapped. Dropping
// them (madvise MADV_DONTNEED) loses nothing: a later touch maps them again from the page cache
// (or rereads the file). Only read-only private file mappings are dropped; anonymous or writable
// memory (a safetensors mapping is PROT_WRITE, where a written page would be lost) is left alone.
#pragma once
#include <cstddef>
#include <string>

namespace zimage {

// Drops the whole pages inside [p, p + n) when they lie in one read-only private file mapping.
// Returns the bytes advised (0 when the range is not such a mapping or holds no whole page).
size_t release_file_pages(const void* p, size_t n);

// Drops every read-only private mapping of the file `path` in this process (matched by device
// and inode, so any name of the file works). Returns the bytes of the mappings advised; 0 when
// the file is not mapped (or cannot be stat'ed).
size_t release_file_mappings(const std::string& path);

// Bytes of [p, p + n) (whole pages) that are mapped into this process now (/proc/self/pagemap's
// present bit): a page only in the page cache does not count. 0 when pagemap cannot be read.
size_t resident_bytes(const void* p, size_t n);

// resident_bytes summed over every mapping of the file `path` in this process.
size_t resident_file_bytes(const std::string& path);

}  // namespace zimage
