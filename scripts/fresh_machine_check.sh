#!/usr/bin/env bash
# Runs the README's two commands on a fresh Debian 12: a minimal bookworm root (mmdebstrap
# --variant=minbase: Debian's essential packages, apt and CA certificates, nothing else), a clean
# clone of this repository's HEAD inside it, then `bash scripts/bootstrap.sh` and
# `bash scripts/test.sh` as root in a chroot. A package the build needs but setup.sh does not
# install fails here, as it would for a new user. Not part of CI (it downloads a Debian base system
# and every build package, and builds everything: about 30 minutes on 2 cores).
#   usage: sudo scripts/fresh_machine_check.sh [ROOT_DIR]   (default /tmp/zimage-fresh)
#   FRESH_BASE=DIR reuses an already created minimal root (copied, never modified).
#   FRESH_ONLY_BOOTSTRAP=1 runs only the first README command.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
root="${1:-/tmp/zimage-fresh}"
[ "$(id -u)" -eq 0 ] || { echo "fresh_machine_check: needs root (chroot and mounts)" >&2; exit 2; }
command -v mmdebstrap >/dev/null || { apt-get update -qq; apt-get install -y -qq mmdebstrap; }

umount_all() { for m in sys dev/pts dev proc; do umount "$root/$m" 2>/dev/null || true; done; }
trap umount_all EXIT
umount_all
rm -rf "$root"
if [ -n "${FRESH_BASE:-}" ]; then
  cp -a "$FRESH_BASE" "$root"
else
  mmdebstrap --variant=minbase --include=ca-certificates bookworm "$root" \
    "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main"
fi
# The repository as a user gets it: a clone of the committed HEAD, no build folders.
git clone -q "$repo" "$root/root/zimage.cpp"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# A network that presents its own CA (a TLS-inspecting proxy) is trusted by this host; a machine of
# the same network would trust it too, so the root gets the host's local CAs (pip reads PIP_CERT).
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  mkdir -p "$root/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null
fi
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
mount --bind /sys "$root/sys"
run() { chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 PIP_CERT=/etc/ssl/certs/ca-certificates.crt bash -c "cd /root/zimage.cpp && $1"; }
echo "== fresh_machine_check: bash scripts/bootstrap.sh"
run "bash scripts/bootstrap.sh"
[ -s "$root/root/zimage.cpp/out/demo.png" ] || { echo "fresh_machine_check: bootstrap wrote no out/demo.png" >&2; exit 1; }
if [ -z "${FRESH_ONLY_BOOTSTRAP:-}" ]; then
  echo "== fresh_machine_check: bash scripts/test.sh"
  run "bash scripts/test.sh"
fi
echo "fresh_machine_check: the README's commands passed on a fresh Debian 12 root ($root)"
