#!/usr/bin/env bash
set -u
D=$PWD/.dev; O=${OUT:-/tmp/out}; W=/tmp/w; mkdir -p "$O" "$W"
exec > >(tee "$O/variants.txt") 2>&1
t0=$(date +%s); el() { echo "[+$(( $(date +%s) - t0 ))s] $*"; }
xz -dc "$D/hone.xz" > "$W/hone"; chmod +x "$W/hone"
xz -dc "$D/libonnxruntime.so.1.31.1.xz" > "$W/libonnxruntime.so.1.31.1"
export ORT_DYLIB_PATH=$W/libonnxruntime.so.1.31.1 HONE_LOG=warn
timeout 150 python3 "$D/make_resnet.py" "$W/r18.onnx" "$W/data" 2>&1 | tail -1
el "hone static int8, minmax only matters here"
timeout 150 "$W/hone" optimize --threads 1 "$W/r18.onnx" --data "$W/data" --techniques static --calibration-rows 16 \
  --max-drop 0.01 --measure-seconds 1 -o "$W/r18q.onnx" 2>&1 | grep -E "^\*|^  |faster" | head -12
el "variants at 1 thread (python onnxruntime $(python3 -c 'import onnxruntime;print(onnxruntime.__version__)'))"
timeout 200 python3 "$D/variants.py" "$W/r18.onnx" "$W/r18q.onnx" "$W" "$W/data/input.npy"
el done
