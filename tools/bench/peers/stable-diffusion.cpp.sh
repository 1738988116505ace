#!/usr/bin/env bash
# Builds stable-diffusion.cpp (CPU, ggml with llamafile's GEMMs) at a pinned commit, from source,
# OUTSIDE this repository, as the peer that tools/bench compares zimage.cpp against.
#
#   tools/bench/peers/stable-diffusion.cpp.sh [--src GIT] [--ggml GIT] [--out DIR] [--jobs N]
#                                             [--qwen-tokenizer tokenizer.json] [--native on|off]
#                                             [--configure-only]
#
#   --src   a clone URL or a local git repository (a work tree or a bare/mirror git dir) of
#           stable-diffusion.cpp                 (default https://github.com/leejet/stable-diffusion.cpp)
#   --ggml  the same for its ggml submodule      (default https://github.com/ggml-org/ggml)
#   --out   where the sources and the build go   (default ~/.cache/zimage-peers/stable-diffusion.cpp)
#   --jobs  parallel compile jobs                (default: nproc)
#   --qwen-tokenizer  a Qwen2/Qwen3 tokenizer.json, used only when the source lacks
#           src/tokenizers/vocab/qwen_merges.hpp (see below); default: the copy under tests/fixtures
#   --native  -DGGML_NATIVE (default on: ggml's CPU code built for this machine, its usual build)
#   --configure-only  export the sources and run cmake, but do not compile
#
# The result is OUT/build/bin/sd-cli. The script prints how to run it on a zimage model.
#
# The commits are pinned: stable-diffusion.cpp ${SD_COMMIT} and the ggml commit its submodule
# points at, ${GGML_COMMIT}. The sources are exported with `git cat-file` file by file, so a
# repository snapshot that lacks some blobs (e.g. the search tool's `fetch` mirrors, which leave out
# files of 4 MiB and more) still builds: the missing tokenizer tables that Z-Image does not use
# (gemma, t5, umt5, mistral, gpt-oss) become empty stubs, and qwen_merges.hpp (the Qwen3 BPE merges,
# which Z-Image's text encoder needs) is regenerated from a tokenizer.json in clip_merges.hpp's
# byte-array format. Missing files elsewhere (images under assets/) are skipped. Build options:
# Release, -DGGML_LLAMAFILE=ON (without it ggml's CPU GEMM is about 2x slower), no WebP/WebM, no
# server front end. Needs git, cmake, a C++17 compiler and python3 (all in scripts/setup.sh).
set -euo pipefail

SD_COMMIT=97d2990807fe6d558e395f8764198d7c7e7b411c
GGML_COMMIT=8e800cef2948046cc47f9db6090491c6128ca42c
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"

src=https://github.com/leejet/stable-diffusion.cpp
ggml=https://github.com/ggml-org/ggml
out="${HOME}/.cache/zimage-peers/stable-diffusion.cpp"
jobs="$(nproc)"
qwen_tok="${ROOT}/tests/fixtures/qwen3_tokenizer/tokenizer.json"
native=ON
configure_only=0

die() { echo "stable-diffusion.cpp.sh: $*" >&2; exit 1; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --src) src="$2"; shift 2 ;;
    --ggml) ggml="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --qwen-tokenizer) qwen_tok="$2"; shift 2 ;;
    --native) case "$2" in on|ON) native=ON ;; off|OFF) native=OFF ;; *) die "--native takes on or off, got '$2'" ;; esac; shift 2 ;;
    --configure-only) configure_only=1; shift ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || die "--jobs must be a positive number, got '$jobs'"
case "$(realpath -m "$out")/" in
  "$ROOT"/*) die "--out $out is inside the repository; the peer is built outside it" ;;
esac
for t in git cmake python3; do command -v "$t" >/dev/null || die "$t is missing (scripts/setup.sh installs it)"; done

# export REPO COMMIT DEST: writes the tree of COMMIT into DEST, one blob at a time; prints the
# paths whose blobs the repository lacks.
export_tree() {
  local repo="$1" commit="$2" dest="$3" gitdir
  gitdir="$dest.git"
  rm -rf "$gitdir" "$dest"
  mkdir -p "$dest"
  # A bare clone brings the objects (any URL or local path); nothing is checked out.
  git clone --quiet --bare --no-hardlinks "$repo" "$gitdir" >&2 || die "cannot clone $repo"
  git --git-dir="$gitdir" cat-file -e "$commit^{commit}" 2>/dev/null || die "$repo has no commit $commit"
  git --git-dir="$gitdir" ls-tree -r -z "$commit" | while IFS= read -r -d '' entry; do
    local meta="${entry%%$'\t'*}" path="${entry#*$'\t'}"
    local mode type sha
    read -r mode type sha <<<"$meta"
    [[ "$type" == blob ]] || continue  # submodules (commit entries) are handled by the caller
    mkdir -p "$dest/$(dirname "$path")"
    if git --git-dir="$gitdir" cat-file blob "$sha" >"$dest/$path" 2>/dev/null; then
      [[ "$mode" == 100755 ]] && chmod +x "$dest/$path"
      [[ "$mode" == 120000 ]] && { local target; target="$(cat "$dest/$path")"; rm "$dest/$path"; ln -s "$target" "$dest/$path"; }
    else
      rm -f "$dest/$path"
      echo "$path"
    fi
  done
  rm -rf "$gitdir"
}

mkdir -p "$out"
sd_src="$out/src"
echo "== stable-diffusion.cpp $SD_COMMIT from $src" >&2
missing="$(export_tree "$src" "$SD_COMMIT" "$sd_src")"
echo "== ggml $GGML_COMMIT from $ggml" >&2
ggml_missing="$(export_tree "$ggml" "$GGML_COMMIT" "$sd_src/ggml")"
[[ -z "$ggml_missing" ]] || die "the ggml source lacks files it needs: $ggml_missing"

# Files the snapshot lacked: tokenizer tables are regenerated or stubbed, assets skipped.
# qwen_merges.hpp first: the stubs below define only the names no header defines yet.
if grep -qx 'src/tokenizers/vocab/qwen_merges.hpp' <<<"$missing"; then
  [[ -f "$qwen_tok" ]] || die "qwen_merges.hpp is missing from the source and --qwen-tokenizer $qwen_tok does not exist"
  python3 - "$qwen_tok" "$sd_src/src/tokenizers/vocab/qwen_merges.hpp" <<'EOF'
import json, sys
tok = json.load(open(sys.argv[1], encoding="utf-8"))
merges = tok["model"]["merges"]
lines = [m if isinstance(m, str) else " ".join(m) for m in merges]
data = ("\n".join(lines) + "\n").encode("utf-8")
with open(sys.argv[2], "w") as f:
    f.write("static const unsigned char qwen2_merges_utf8_c_str[] = {\n")
    for i in range(0, len(data), 4096):
        f.write(",".join("0x%02x" % b for b in data[i:i + 4096]) + ",\n")
    f.write("};\n")
print(f"  regenerated qwen_merges.hpp: {len(lines)} merges from {sys.argv[1]}", file=sys.stderr)
EOF
fi
while IFS= read -r path; do
  [[ -n "$path" ]] || continue
  case "$path" in
    src/tokenizers/vocab/qwen_merges.hpp) ;;
    src/tokenizers/vocab/*.hpp)
      # Tables of other models (gemma, t5, umt5, mistral, gpt-oss): one-byte stubs of every array
      # vocab.cpp reads that no header defines yet (Z-Image never loads them).
      python3 - "$sd_src/src/tokenizers/vocab" "$path" <<'EOF'
import glob, os, re, sys
d, path = sys.argv[1], sys.argv[2]
names = sorted(set(re.findall(r"reinterpret_cast<const char\*>\((\w+)\)", open(os.path.join(d, "vocab.cpp")).read())))
present = "".join(open(p, errors="replace").read() for p in glob.glob(os.path.join(d, "*.hpp")))
stub = [n for n in names if not re.search(r"\b" + n + r"\s*\[", present)]
with open(os.path.join(d, os.path.basename(path)), "w") as f:
    f.write("// stub written by zimage's tools/bench/peers/stable-diffusion.cpp.sh: not used by Z-Image\n")
    for n in stub:
        f.write(f"static const unsigned char {n}[] = {{0}};\n")
print(f"  stubbed {os.path.basename(path)}: {', '.join(stub) or '(nothing)'}", file=sys.stderr)
EOF
      ;;
    assets/*|docs/*|*.png|*.jpg|*.gif|*.webm|*.webp) ;;
    *) die "the source lacks $path, which the build needs (give a full clone with --src)" ;;
  esac
done <<<"$missing"

echo "== configure and build (Release, GGML_NATIVE=$native, GGML_LLAMAFILE=ON, $jobs jobs)" >&2
cmake -S "$sd_src" -B "$out/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE="$native" -DGGML_LLAMAFILE=ON \
  -DSD_WEBP=OFF -DSD_WEBM=OFF -DSD_SERVER_BUILD_FRONTEND=OFF -DSD_BUILD_SHARED_LIBS=OFF >&2
if [[ $configure_only == 1 ]]; then
  echo "configured $out/build (stable-diffusion.cpp $SD_COMMIT, ggml $GGML_COMMIT); build: cmake --build $out/build --target sd-cli"
  exit 0
fi
cmake --build "$out/build" --target sd-cli -j "$jobs" >&2
bin="$out/build/bin/sd-cli"
[[ -x "$bin" ]] || die "the build did not produce $bin"
{
  echo "$SD_COMMIT" >"$out/COMMIT"
  echo "built $bin (stable-diffusion.cpp $SD_COMMIT, ggml $GGML_COMMIT)"
  echo "run it on a Z-Image transformer (original/ComfyUI layout, .safetensors or .gguf):"
  echo "  $bin --diffusion-model z.gguf --llm qwen3.safetensors --vae vae.safetensors -p PROMPT \\"
  echo "      -W 512 -H 512 --steps 4 --cfg-scale 1.0 --sampling-method euler -t 2 -o out.png"
  echo "tools/bench/peers/README.md says how the weights are converted and what is compared."
}
