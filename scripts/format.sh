#!/usr/bin/env bash
# Formats every C++/CUDA source of the repository with .clang-format (clang-format from Debian's
# clang-format package, which scripts/setup.sh installs). `format.sh --check` changes nothing and
# fails, listing the files, when one is not formatted (scripts/test.sh runs it first).
set -euo pipefail
cd "$(dirname "$0")/.."
# Tracked and new (not ignored) files, each once (a merge in progress lists a file per stage).
mapfile -t files < <(git ls-files --cached --others --exclude-standard '*.cpp' '*.h' '*.cc' '*.hpp' '*.cu' '*.cuh' '*.inc' |
  grep -v '^tests/fixtures/' | sort -u)
if [ "${1:-}" = "--check" ]; then
  bad=()
  for f in "${files[@]}"; do
    clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
  done
  if [ ${#bad[@]} -gt 0 ]; then
    printf 'format.sh: not formatted with .clang-format (run bash scripts/format.sh):\n' >&2
    printf '  %s\n' "${bad[@]}" >&2
    exit 1
  fi
  echo "format.sh: ${#files[@]} files formatted"
else
  clang-format -i "${files[@]}"
fi
