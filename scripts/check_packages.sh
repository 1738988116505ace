#!/usr/bin/env bash
# Checks that every system file a configured and built tree used (headers, CMake package files,
# linked libraries, the build tools) belongs to a Debian package that scripts/setup.sh installs,
# either by name or as a dependency of one it names (Depends/Pre-Depends, never Recommends,
# since setup.sh installs with --no-install-recommends). A package that was installed by hand on
# this machine but is missing from setup.sh fails the check here, instead of failing the README's
# first command on a fresh machine.
#   usage: scripts/check_packages.sh BUILD_DIR [BUILD_DIR...]
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 BUILD_DIR [BUILD_DIR...]" >&2; exit 2; }

mapfile -t named < <(bash scripts/setup.sh --list)
# Everything setup.sh brings in: the named packages and their dependencies, recursively.
closure=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
            --no-replaces --no-enhances "${named[@]}" 2>/dev/null |
          sed -n 's/^ *\(Pre\)\{0,1\}Depends: //p; /^[a-z0-9]/p' | tr -d '<>' | sed 's/:.*//' | sort -u)
[ -n "$closure" ] || { echo "check_packages: apt-cache knows none of setup.sh's packages (run apt-get update)" >&2; exit 2; }

files=$(mktemp)
trap 'rm -f "$files" "$files.cands" "$files.owners"' EXIT
for b in "$@"; do
  [ -f "$b/build.ninja" ] || { echo "check_packages: $b is not a configured Ninja build folder" >&2; exit 2; }
  ninja -C "$b" -t deps 2>/dev/null | sed -n 's/^ *\(\/usr\/[^ ]*\)$/\1/p'         # headers
  grep -ho '/usr/[^ ;"]*\.\(cmake\|so[.0-9]*\|a\|pc\)' "$b/build.ninja" "$b/CMakeCache.txt" || true  # packages, libraries
  grep -h '^CMAKE_\(CXX\|C\|CUDA\)_COMPILER:\|^CMAKE_MAKE_PROGRAM:\|^PKG_CONFIG_EXECUTABLE:' "$b/CMakeCache.txt" | sed 's/.*=//'
done | sed 's/:.*//' | grep '^/usr/' | sort -u > "$files"
command -v cmake >> "$files"

# The owning package of each file, from dpkg's file lists (dpkg knows the path it installed,
# possibly before /usr-merge or before following a symbolic link: try those forms too).
while read -r f; do
  [ -e "$f" ] || continue
  r=$(readlink -f "$f")
  echo "$f $f $r ${f#/usr} ${r#/usr}"
done < "$files" > "$files.cands"
awk 'FNR == 1 { n = split(FILENAME, parts, "/"); pkg = parts[n]; sub(/\.list$/, "", pkg); sub(/:.*/, "", pkg) }
     FILENAME != "-" && !($0 in owner) { owner[$0] = pkg; next }
     FILENAME == "-" { for (i = 2; i <= NF; ++i) if ($i in owner) { print owner[$i], $1; next }
                       print "?", $1 }' /var/lib/dpkg/info/*.list - < "$files.cands" > "$files.owners"
status=0
while read -r pkg f; do
  if [ "$pkg" = "?" ]; then
    case "$f" in /usr/local/cuda*) ;; *) echo "check_packages: $f is used by the build but belongs to no Debian package"; status=1 ;; esac
    continue
  fi
  if ! grep -qx "$pkg" <<< "$closure"; then
    echo "check_packages: $f belongs to Debian package '$pkg', which scripts/setup.sh neither names nor pulls in"
    status=1
  fi
done < <(sort -u "$files.owners" | sort -k1,1 -u)
used=$(cut -d' ' -f1 "$files.owners" | grep -vx '?' | sort -u | wc -l)
if [ $status -eq 0 ]; then
  echo "check_packages: $(wc -l < "$files") system files from $used packages, all installed by scripts/setup.sh"
fi
exit $status
