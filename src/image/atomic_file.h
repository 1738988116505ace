// Atomic file replacement: temporary file in the target's folder, fsync, rename.
#pragma once
#include <cstddef>
#include <string>

namespace zimage {

// Writes `n` bytes to `path` so that readers see either the old file or the complete new one:
// the data goes to "<dir>/.<name>.tmp-XXXXXX" (mkstemp), is fsynced, and is renamed over `path`
// (renameat2 RENAME_NOREPLACE when overwrite is false). The new file gets mode 0666 & ~umask.
// Any failure removes the temporary file and throws zimage::Error "[image] cannot write '<path>': ..."
// with the OS reason; an existing file at `path` is never truncated or modified.
void write_file_atomic(const std::string& path, const void* data, size_t n, bool overwrite);

}  // namespace zimage
