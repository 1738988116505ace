#!/usr/bin/env bash
# Creates (once, and again when tests/hub/requirements.txt changes) the virtualenv of the
# test-side Python tools, OUTSIDE the repository: $ZIMAGE_TEST_VENV, default
# ~/.cache/zimage-test-venv. Prints its python's path. Needs PyPI the first time; fails (exit 1,
# with a message) when the environment cannot be created.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${ZIMAGE_TEST_VENV:-$HOME/.cache/zimage-test-venv}
req="$root/tests/hub/requirements.txt"
case "$(cd "$(dirname "$venv")" 2>/dev/null && pwd)/" in
  "$root"/*) echo "test_venv: $venv is inside the repository; choose another ZIMAGE_TEST_VENV" >&2; exit 1 ;;
esac
# ctest runs several tests that call this at once: one creates or updates the venv, the others wait.
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$req" "$venv/.zimage-requirements"; then
  py=python3
  [ -x /usr/bin/python3 ] && py=/usr/bin/python3
  echo "test_venv: creating $venv (pip install -r tests/hub/requirements.txt)" >&2
  rm -rf "$venv"
  if ! "$py" -m venv "$venv" >&2 || ! "$venv/bin/pip" install -q --disable-pip-version-check -r "$req" >&2; then
    rm -rf "$venv"
    echo "test_venv: could not create the test virtualenv at $venv (python3-venv missing, or PyPI unreachable)" >&2
    exit 1
  fi
  cp "$req" "$venv/.zimage-requirements"
fi
# Further requirement files (e.g. tests/server/requirements.txt) install on top, without recreating
# the venv (other checkouts that share it keep their packages).
for extra in "$root"/tests/server/requirements.txt; do
  [ -f "$extra" ] || continue
  mark="$venv/.zimage-requirements-$(basename "$(dirname "$extra")")"
  if ! cmp -s "$extra" "$mark"; then
    echo "test_venv: pip install -r ${extra#"$root"/}" >&2
    if ! "$venv/bin/pip" install -q --disable-pip-version-check -r "$extra" >&2; then
      echo "test_venv: could not install ${extra#"$root"/} into $venv (PyPI unreachable?)" >&2
      exit 1
    fi
    cp "$extra" "$mark"
  fi
done
echo "$venv/bin/python"
