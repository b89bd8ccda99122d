#!/usr/bin/env bash
# hone vs the FastAPI + onnxruntime baseline vs standalone Triton on mlp100,
# batch 1, V2 JSON, wrk at c=1 and c=16 plus perf_analyzer, through
# shared/peers/bench.sh. Prints the markdown table; results land in $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=${KIT:-../shared/peers}
MODELS=${MODELS:-../shared/models}
OUT=${OUT:-bench/results/mlp100-$(date +%Y%m%d-%H%M%S)}
cargo build --release -q -p hone
bash "$KIT/setup.sh" all >/dev/null
REPO=$(mktemp -d)
trap 'rm -rf "$REPO"' EXIT
# No config.pbtxt: the defaults a user gets.
mkdir -p "$REPO/mlp100/1" && cp "$MODELS/mlp/mlp100.onnx" "$REPO/mlp100/1/model.onnx"
mkdir -p "$OUT"
SUT_LABEL=hone bash "$KIT/bench.sh" \
  "exec $PWD/target/release/hone serve --model-repository $REPO --http-port 8000 --grpc-port 8001 --metrics-port 8002" \
  http://127.0.0.1:8000 mlp100 "$MODELS/mlp/mlp100.onnx" "$KIT/example/body1.json" "$OUT"
