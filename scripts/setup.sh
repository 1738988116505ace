#!/usr/bin/env bash
# Installs every build and test dependency from Debian's packages. Idempotent.
set -euo pipefail
PKGS=(build-essential cmake ninja-build pkg-config git
      libdnnl-dev ocl-icd-opencl-dev nlohmann-json3-dev libpng-dev libjpeg62-turbo-dev libpcre2-dev libicu-dev
      libgtest-dev libgmock-dev libcli11-dev libcpp-httplib-dev
      libcurl4-openssl-dev libssl-dev ca-certificates python3-venv
      clang libclang-rt-14-dev libomp-dev llvm-14 clang-format
      chromium chromium-driver)
# clang, libclang-rt-14-dev (libclang_rt.fuzzer/asan/ubsan) and libomp-dev (clang's OpenMP) build
# the libFuzzer targets (scripts/fuzz.sh); llvm-14 has llvm-symbolizer for readable reports.
# clang-format checks that the sources follow .clang-format (scripts/format.sh --check).
# chromium and chromium-driver run the web page test of `zimage serve` (tests/server, selenium).
# `setup.sh --list` prints the packages (scripts/check_packages.sh compares the build against them).
if [ "${1:-}" = "--list" ]; then printf '%s\n' "${PKGS[@]}"; exit 0; fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "setup: all build dependencies present"
