#!/usr/bin/env bash
# ctest server_<part>: runs tests/server/server_test.py PART in the test virtualenv
# (scripts/test_venv.sh: openai, requests, selenium from tests/server/requirements.txt).
# Skips (exit 77) with a message only when that virtualenv cannot be created.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
part=$1 cli=$2 model=$3 out=$4
if ! py=$(bash "$here/../../scripts/test_venv.sh"); then
  echo "SKIP: the server tests need the test virtualenv (scripts/test_venv.sh: python3-venv and PyPI access)" >&2
  exit 77
fi
exec "$py" "$here/server_test.py" "$part" --cli "$cli" --model "$model" --out "$out"
