#!/usr/bin/env bash
# Writes a model repository of ready-made pipelines to OUT, which
# `hone serve --model-repository OUT` serves as it is:
#   minilm_text  text (BYTES [-1]) -> embedding (FP32 [-1, 384]):
#                the tokenizer step, then the shared MiniLM sentence encoder.
# Model files come from the shared model set (SHARED, default ../shared/models
# beside the checkout).
set -euo pipefail
out=${1:?usage: examples/pipelines/setup.sh OUT}
here=$(cd "$(dirname "$0")" && pwd)
shared=${SHARED:-$here/../../../shared/models}
[ -f "$shared/minilm/minilm.onnx" ] || {
  echo "setup.sh: the shared model set is not at $shared (set SHARED=...)" >&2
  exit 1
}

# A hard link when the file system allows it, else a copy.
place() { mkdir -p "$(dirname "$2")"; ln -f "$1" "$2" 2>/dev/null || cp "$1" "$2"; }

mkdir -p "$out"
cp -R "$here/repository/." "$out/"
place "$shared/minilm/tokenizer/tokenizer.json" "$out/minilm_tokenizer/1/tokenizer.json"
place "$shared/minilm/minilm.onnx" "$out/minilm/1/model.onnx"
mkdir -p "$out/minilm_text/1"
echo "wrote $out: minilm_text (ensemble: minilm_tokenizer -> minilm)"
