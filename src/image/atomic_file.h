// Atomic file replacement: temporary file in the target's folder, fsync, rename.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace zimage {

// Writes `n` bytes to `path` so that readers see either the old file or the complete new one:
// the data goes to "<dir>/.<name>.tmp-XXXXXX" (mkstemp), is fsynced, and is renamed over `path`
// (renameat2 RENAME_NOREPLACE when overwrite is false). The new file gets mode 0666 & ~umask.
// Any failure removes the temporary file and throws zimage::Error "[image] cannot write '<path>': ..."
// with the OS reason; an existing file at `path` is never truncated or modified. A `path` that
// exists and is not a regular file (folder, device, pipe, socket) is refused.
void write_file_atomic(const std::string& path, const void* data, size_t n, bool overwrite);

// Several files written all or none: add() writes each one to a fsynced temporary file next to
// its target, commit() renames them all into place. Until commit() no target is touched; the
// destructor removes the temporary files that were not committed. With overwrite off, commit()
// refuses a target that exists by then and removes the targets it had already renamed into place,
// so a failed commit leaves none of the new files. Errors are zimage::Error
// "[image] cannot write '<path>': ..." as for write_file_atomic.
class StagedFiles {
 public:
  explicit StagedFiles(bool overwrite) : overwrite_(overwrite) {}
  StagedFiles(const StagedFiles&) = delete;
  StagedFiles& operator=(const StagedFiles&) = delete;
  ~StagedFiles();

  // Stages `n` bytes for `path`.
  void add(const std::string& path, const void* data, size_t n);
  // Stages a file that the caller writes itself: returns the name of an empty temporary file in
  // the target's folder, which the caller may rewrite or replace (by rename) before commit().
  std::string reserve(const std::string& path);
  // Renames every staged file to its target, in the order they were added.
  void commit();

 private:
  struct Entry {
    std::string path, tmp;
  };
  bool overwrite_;
  std::vector<Entry> entries_;
};

}  // namespace zimage
