#!/usr/bin/env bash
# resnet18 served by hone with dynamic batching, binary tensor data, loaded by
# perf_analyzer at concurrency 8; beside it, ONNX Runtime in-process on the
# same cores at batch 1..8 (the ceiling the server can approach), as one
# session with every core and as two sessions with half each.
#
# By default the repository has no config.pbtxt: what a user gets from the
# ONNX file alone. CONFIG=1 writes one from MAX_BATCH, INSTANCES, THREADS and
# DELAY_US instead.
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=${KIT:-../shared/peers}
MODELS=${MODELS:-../shared/models}
CORES=$(nproc)
CONC=${CONC:-8}
cargo build --release -q -p hone -p hone-runtime --examples
bash "$KIT/setup.sh" perf_analyzer >/dev/null
REPO=$(mktemp -d)
mkdir -p "$REPO/resnet18/1"
ln -s "$(realpath "$MODELS/resnet18/resnet18.onnx")" "$REPO/resnet18/1/model.onnx"
if [ "${CONFIG:-0}" = 1 ]; then
  cat > "$REPO/resnet18/config.pbtxt" <<CFG
max_batch_size: ${MAX_BATCH:-8}
dynamic_batching { max_queue_delay_microseconds: ${DELAY_US:-5000} }
instance_group [ { count: ${INSTANCES:-1}, kind: KIND_CPU } ]
parameters { key: "intra_op_thread_count" value: { string_value: "${THREADS:-$CORES}" } }
CFG
fi
target/release/hone serve --model-repository "$REPO" --http-port 8600 --grpc-port 8601 --metrics-port 8602 2>"$REPO/hone.log" &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$REPO"' EXIT
until curl -sf http://127.0.0.1:8600/v2/models/resnet18/ready >/dev/null; do sleep 0.1; done
echo "## served config"
curl -s http://127.0.0.1:8600/v2/models/resnet18/config | python3 -c \
  'import json,sys; c=json.load(sys.stdin); print("max_batch_size %s, instances %s, parameters %s" % (c["max_batch_size"], c["instance_group"][0]["count"], c.get("parameters", {})))'
echo
INPROC=$(mktemp)
echo "## in-process ONNX Runtime, one session, $CORES intra-op threads"
target/release/examples/inproc "$MODELS/resnet18/resnet18.onnx" --threads "$CORES" --batches 1,2,4,8 --seconds 5 | tee -a "$INPROC"
echo
echo "## in-process ONNX Runtime, two sessions side by side, $((CORES / 2)) intra-op threads each"
target/release/examples/inproc "$MODELS/resnet18/resnet18.onnx" --sessions 2 --threads "$((CORES / 2))" --batches 1,2,4,8 --seconds 5 | tee -a "$INPROC"
echo
echo "## hone serve, perf_analyzer, HTTP binary tensors, concurrency $CONC"
PA=$(bash "$KIT/perf_analyzer.sh" -m resnet18 -u 127.0.0.1:8600 -i http -b 1 --concurrency-range "$CONC" \
  --measurement-interval 8000 2>&1 || true)
echo "$PA" | grep -E "Throughput|Avg request|p50|p99" || echo "$PA" | tail -5
curl -s http://127.0.0.1:8600/v2/models/resnet18/stats | python3 -c \
  'import json,sys; s=json.load(sys.stdin)["model_stats"][0]; print("mean batch size: %.2f" % (int(s["inference_count"]) / max(1, int(s["execution_count"]))))'
SERVED=$(echo "$PA" | sed -n 's/.*Throughput: \([0-9.]*\) infer\/sec.*/\1/p' | tail -1)
BEST=$(awk -F'|' '/^\| [0-9]/ { if ($4 + 0 > best) best = $4 + 0 } END { print best }' "$INPROC")
rm -f "$INPROC"
python3 -c "print('served %s infer/s = %.0f %% of the best in-process %s items/s' % ('$SERVED', 100 * float('${SERVED:-0}') / float('$BEST'), '$BEST'))"
