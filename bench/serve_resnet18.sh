#!/usr/bin/env bash
# resnet18 served by hone with dynamic batching, binary tensor data, loaded by
# perf_analyzer at concurrency 8; beside it, ONNX Runtime in-process with the
# same intra-op threads at batch 1..8 (the ceiling the server can approach).
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=${KIT:-../shared/peers}
MODELS=${MODELS:-../shared/models}
THREADS=${THREADS:-2}
CONC=${CONC:-8}
MAX_BATCH=${MAX_BATCH:-8}
cargo build --release -q -p hone -p hone-runtime --examples
bash "$KIT/setup.sh" perf_analyzer >/dev/null
REPO=$(mktemp -d)
mkdir -p "$REPO/resnet18/1"
ln -s "$(realpath "$MODELS/resnet18/resnet18.onnx")" "$REPO/resnet18/1/model.onnx"
cat > "$REPO/resnet18/config.pbtxt" <<CFG
max_batch_size: $MAX_BATCH
dynamic_batching { max_queue_delay_microseconds: 5000 }
parameters { key: "intra_op_thread_count" value: { string_value: "$THREADS" } }
CFG
target/release/hone serve --model-repository "$REPO" --http-port 8600 --grpc-port 8601 --metrics-port 8602 2>"$REPO/hone.log" &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$REPO"' EXIT
until curl -sf http://127.0.0.1:8600/v2/models/resnet18/ready >/dev/null; do sleep 0.1; done
echo "## in-process ONNX Runtime, $THREADS intra-op threads"
target/release/examples/inproc "$MODELS/resnet18/resnet18.onnx" --threads "$THREADS" --batches 1,2,4,8 --seconds 5
echo
echo "## hone serve, perf_analyzer, HTTP binary tensors, concurrency $CONC"
bash "$KIT/perf_analyzer.sh" -m resnet18 -u 127.0.0.1:8600 -i http -b 1 --concurrency-range "$CONC" \
  --measurement-interval 8000 2>&1 | grep -E "Throughput|latency|Avg request|p50|p99" || true
curl -s http://127.0.0.1:8600/v2/models/resnet18/stats | python3 -c \
  'import json,sys; s=json.load(sys.stdin)["model_stats"][0]; print("mean batch size: %.2f" % (int(s["inference_count"]) / max(1, int(s["execution_count"]))))'
