#!/usr/bin/env bash
# Each public header compiles on its own with only -I include (and system headers): no header
# of include/zimage reaches into src/. Usage: headers_test.sh <c++ compiler> <include dir>
set -euo pipefail
cxx=$1 inc=$2
n=0
for h in "$inc"/zimage/*.h; do
  "$cxx" -std=c++20 -fsyntax-only -I "$inc" -x c++ "$h"
  n=$((n + 1))
done
[[ $n -gt 0 ]] || { echo "no headers in $inc/zimage" >&2; exit 1; }
echo "$n public headers compile alone"
