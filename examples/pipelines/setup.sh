#!/usr/bin/env bash
# Writes a model repository of ready-made pipelines to OUT, which
# `hone serve --model-repository OUT` serves as it is:
#   minilm_text  text (BYTES [-1]) -> embedding (FP32 [-1, 384]):
#                the tokenizer step, then the shared MiniLM sentence encoder;
#   textline_orientation  image (BYTES [-1], JPEG/PNG/WebP) -> label (BYTES,
#                "0" or "180") and score (FP32): the image step, PP-OCR's
#                text-line direction classifier, then the labels.
# Model files come from the shared model set (SHARED, default ../shared/models
# beside the checkout) and from PyPI: the classifier is the one the
# rapidocr-onnxruntime wheel carries (fetched once with pip, hash-checked,
# kept under ~/.cache/hone/pipelines).
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

wheel=rapidocr_onnxruntime-1.4.4-py3-none-any.whl
wheel_sha256=971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf
cache=${XDG_CACHE_HOME:-$HOME/.cache}/hone/pipelines
mkdir -p "$cache"
if ! echo "$wheel_sha256  $cache/$wheel" | sha256sum -c --status 2>/dev/null; then
  echo "fetching $wheel from PyPI" >&2
  # Into a directory of this run's own, checked, then renamed into place:
  # two runs at once never read each other's half-written file.
  fetch=$(mktemp -d "$cache/fetch.XXXXXX")
  python3 -m pip download --quiet --no-deps --only-binary :all: \
    rapidocr-onnxruntime==1.4.4 -d "$fetch"
  echo "$wheel_sha256  $fetch/$wheel" | sha256sum -c --status || {
    echo "setup.sh: $wheel does not have the expected sha256" >&2
    rm -rf "$fetch"
    exit 1
  }
  mv -f "$fetch/$wheel" "$cache/$wheel"
  rm -rf "$fetch"
fi
mkdir -p "$out/textline_cls/1" "$out/textline_image/1" "$out/textline_orientation/1"
python3 - "$cache/$wheel" "$out/textline_cls/1/model.onnx" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, \
        z.open("rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx") as src, \
        open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
echo "wrote $out: minilm_text (ensemble: minilm_tokenizer -> minilm)," \
  "textline_orientation (ensemble: textline_image -> textline_cls -> textline_labels)"
