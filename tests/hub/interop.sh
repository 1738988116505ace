#!/usr/bin/env bash
# ctest hub_huggingface_hub_interop: zimage and huggingface_hub (pinned, in the test virtualenv
# that scripts/test_venv.sh creates outside the repository) share one cache, both ways.
# Fails (never skips) when the virtualenv cannot be created.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cli=$1
if ! py=$(bash "$here/../../scripts/test_venv.sh"); then
  echo "FAIL: the huggingface_hub interop test needs the test virtualenv (scripts/test_venv.sh: python3-venv and PyPI access)" >&2
  exit 1
fi
exec "$py" "$here/interop_test.py" --cli "$cli" --fixture "$here/../fixtures/models/tiny-fp32" --fake-hub "$here/fake_hub.py"
