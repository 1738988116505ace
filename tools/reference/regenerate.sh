#!/usr/bin/env bash
# Regenerates tests/fixtures with the pinned Python reference (diffusers/transformers, CPU).
#   ZIMAGE_REF_VENV        venv to create/reuse (default: ~/.cache/zimage-ref-venv)
#   ZIMAGE_QWEN3_TOKENIZER folder with the real Qwen3 tokenizer.json + tokenizer_config.json
#                          (default: keep the copy already in tests/fixtures/qwen3_tokenizer)
#   PIP_EXTRA_ARGS         extra pip arguments (e.g. --index-url https://download.pytorch.org/whl/cpu)
# Extra arguments are passed to make_fixtures.py (e.g. --only tokenizer,scheduler).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${ZIMAGE_REF_VENV:-$HOME/.cache/zimage-ref-venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  echo "creating venv $venv"
  "$python" -m venv "$venv"
fi
req_stamp="$venv/.zimage-requirements.sha256"
req_hash="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [ ! -f "$req_stamp" ] || [ "$(cat "$req_stamp")" != "$req_hash" ]; then
  # shellcheck disable=SC2086
  "$venv/bin/pip" install ${PIP_EXTRA_ARGS:-} -r "$here/requirements.txt"
  echo "$req_hash" > "$req_stamp"
fi

tok_args=()
if [ -n "${ZIMAGE_QWEN3_TOKENIZER:-}" ]; then
  tok_args=(--tokenizer-src "$ZIMAGE_QWEN3_TOKENIZER")
fi
OMP_NUM_THREADS=2 "$venv/bin/python" "$here/make_fixtures.py" --out "$root/tests/fixtures" "${tok_args[@]}" "$@"
du -sh "$root/tests/fixtures"
