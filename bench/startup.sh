#!/usr/bin/env bash
# Time from process start to "mlp100 ready" (polled every 2 ms) and idle RSS,
# with the share of it that is libonnxruntime's own pages.
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS=${MODELS:-../shared/models}
cargo build --release -q -p hone
REPO=$(mktemp -d)
trap 'rm -rf "$REPO"' EXIT
mkdir -p "$REPO/mlp100/1" && cp "$MODELS/mlp/mlp100.onnx" "$REPO/mlp100/1/model.onnx"
for run in 1 2 3 4 5; do
  start=$(date +%s%N)
  target/release/hone serve --model-repository "$REPO" --http-port 8090 --no-grpc --no-metrics 2>/dev/null &
  pid=$!
  until curl -sf -o /dev/null http://127.0.0.1:8090/v2/models/mlp100/ready; do sleep 0.002; done
  ready_ms=$(( ($(date +%s%N) - start) / 1000000 ))
  sleep 1
  rss=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
  ort=$(awk '/libonnxruntime/{f=1;next} /^[0-9a-f]+-/{f=0} f&&/^Rss:/{s+=$2} END{print s+0}' /proc/$pid/smaps)
  echo "run $run: ready ${ready_ms} ms, idle RSS $((rss / 1024)) MiB ($(( (rss - ort) / 1024 )) MiB without libonnxruntime's $((ort / 1024)) MiB)"
  kill $pid; wait $pid 2>/dev/null || true
done
