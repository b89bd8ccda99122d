#!/usr/bin/env bash
# What keeping answers for ground-truth labels costs on the request path:
# the breast-cancer model hone trains (with its card, so every answer is
# recorded under a request id hone makes up), served by two `hone serve`
# processes, one with --feedback-rows 0, driven alternately by `hone bench`
# at c=16 (HTTP JSON, the held-out rows). Prints req/s per round and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS=${MODELS:-../shared/models}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8s}
cargo build --release -q -p hone
HONE=$PWD/target/release/hone
REPO=$(mktemp -d)
ON= OFF=
trap 'kill $ON $OFF 2>/dev/null || true; rm -rf "$REPO"' EXIT
BC=$MODELS/tabular/breast_cancer
mkdir -p "$REPO/bc/1"
HONE_LOG=warn "$HONE" train "$BC/train.csv" --target label --val "$BC/val.csv" -o "$REPO/bc/1/model.onnx" --quiet
printf 'max_batch_size: 64\ndynamic_batching {}\n' > "$REPO/bc/config.pbtxt"
# One core each would starve wrk-like load on two cores: both servers share
# the machine, but only one is driven at a time.
"$HONE" serve --model-repository "$REPO" --http-port 18500 --grpc-port 18501 --metrics-port 18502 ${ON_ARGS:-} >/dev/null 2>&1 &
ON=$!
"$HONE" serve --model-repository "$REPO" --http-port 18600 --grpc-port 18601 --metrics-port 18602 --feedback-rows 0 >/dev/null 2>&1 &
OFF=$!
for p in 18500 18600; do
  for _ in $(seq 100); do curl -sf localhost:$p/v2/health/ready >/dev/null && break; sleep 0.1; done
done
declare -A sum=([on]=0 [off]=0)
declare -A port=([on]=18500 [off]=18600)
for r in $(seq "$ROUNDS"); do
  # ABBA: neither side always goes first.
  order="on off"; [ $((r % 2)) -eq 0 ] && order="off on"
  for m in $order; do
    rps=$("$HONE" bench --url "http://127.0.0.1:${port[$m]}" --model bc --concurrency 16 --duration "$DURATION" \
      --warmup 2s --data "$BC/test.csv" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["steps"][0]["throughput"])')
    echo "round $r feedback $m: $rps req/s"
    sum[$m]=$(python3 -c "print(${sum[$m]} + $rps)")
  done
done
curl -s localhost:18500/v2/models/bc/feedback | python3 -c 'import json,sys; d=json.load(sys.stdin); print("answers kept", d["record"])'
python3 -c "print(f'feedback on / off: {${sum[on]} / ${sum[off]}:.3f}')"
