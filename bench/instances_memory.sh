#!/usr/bin/env bash
# What a model's instances cost in memory, and whether throughput holds:
# resnet18 (MODEL=path under the shared models for another; it must take
# random inputs) served with instance_group count 1, and 4 with and without
# shared weights (config parameter share_weights; one intra-op thread each,
# dynamic batching up to 8), by each binary given (BINARIES="old new",
# default the release build). After 3 s of load at c=8 over gRPC: RSS and
# peak RSS, then `hone bench` at c=8 over gRPC for DURATION.
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS=${MODELS:-../shared/models}
MODEL=${MODEL:-resnet18/resnet18.onnx}
DURATION=${DURATION:-8s}
[ -n "${NO_BUILD:-}" ] || cargo build --release -q -p hone
BINARIES=${BINARIES:-$PWD/target/release/hone}
BENCH=$PWD/target/release/hone
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
for bin in $BINARIES; do
  for run in "1 true" "4 false" "4 true"; do
    read -r n share <<<"$run"
    REPO=$(mktemp -d)
    mkdir -p "$REPO/resnet18/1"
    ln -s "$(realpath "$MODELS/$MODEL")" "$REPO/resnet18/1/model.onnx"
    cat > "$REPO/resnet18/config.pbtxt" <<CFG
max_batch_size: 8
dynamic_batching { max_queue_delay_microseconds: 2000 }
instance_group [ { count: $n, kind: KIND_CPU } ]
parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
parameters { key: "share_weights" value: { string_value: "$share" } }
CFG
    "$bin" serve --model-repository "$REPO" --http-port 18700 --grpc-port 18701 --metrics-port 18702 >/dev/null 2>&1 &
    PID=$!
    until curl -sf http://127.0.0.1:18700/v2/models/resnet18/ready >/dev/null; do sleep 0.2; done
    # Warm-up: every instance runs (and allocates its activations).
    "$BENCH" bench --url http://127.0.0.1:18700 --protocol grpc --grpc-url http://127.0.0.1:18701 --model resnet18 \
      --concurrency 8 --duration 3s --warmup 0s --json >/dev/null
    rss=$(awk '/VmRSS/ {print int($2/1024)}' /proc/$PID/status)
    hwm=$(awk '/VmHWM/ {print int($2/1024)}' /proc/$PID/status)
    rps=$("$BENCH" bench --url http://127.0.0.1:18700 --protocol grpc --grpc-url http://127.0.0.1:18701 --model resnet18 \
      --concurrency 8 --duration "$DURATION" --warmup 2s --json | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["steps"][0]["throughput"], 1))')
    echo "$(basename "$bin") instances $n, share_weights $share: RSS $rss MiB (peak $hwm MiB), $rps req/s"
    kill $PID; wait $PID 2>/dev/null || true
    rm -rf "$REPO"
  done
done
