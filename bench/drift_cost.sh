#!/usr/bin/env bash
# What live drift costs on the request path: mlp100 served twice from one
# `hone serve`, "on" with a profile beside it (every request binned) and
# "off" without, driven alternately by `hone bench` at c=16 (HTTP JSON, the
# same seeded rows the profile was made from). Prints req/s per round and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS=${MODELS:-../shared/models}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8s}
cargo build --release -q -p hone
HONE=$PWD/target/release/hone
REPO=$(mktemp -d)
SERVER=
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$REPO"' EXIT
# mlp100 takes 100 features: seeded standard-normal rows as an .npy directory,
# profiled and then sent.
mkdir -p "$REPO/data"
python3 - "$REPO/data/input.npy" <<'PY'
import random, struct, sys
rows, cols = 4000, 100
rng = random.Random(0)
header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (rows, cols)
header += " " * (-(len(header) + 11) % 64) + "\n"
with open(sys.argv[1], "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
    f.write(struct.pack("<%df" % (rows * cols), *(rng.gauss(0, 1) for _ in range(rows * cols))))
PY
for m in on off; do
  mkdir -p "$REPO/$m/1" && cp "$MODELS/mlp/mlp100.onnx" "$REPO/$m/1/model.onnx"
done
"$HONE" profile "$REPO/data" --model "$REPO/on/1/model.onnx" >/dev/null
"$HONE" serve --model-repository "$REPO" --http-port 18500 --grpc-port 18501 --metrics-port 18502 >/dev/null 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -sf localhost:18500/v2/health/ready >/dev/null && break; sleep 0.1; done
declare -A sum=([on]=0 [off]=0)
for r in $(seq "$ROUNDS"); do
  for m in on off; do
    rps=$("$HONE" bench --url http://127.0.0.1:18500 --model $m --concurrency 16 --duration "$DURATION" \
      --warmup 2s --data "$REPO/data" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["steps"][0]["throughput"])')
    echo "round $r drift $m: $rps req/s"
    sum[$m]=$(python3 -c "print(${sum[$m]} + $rps)")
  done
done
curl -s localhost:18500/v2/models/on/drift | python3 -c 'import json,sys; d=json.load(sys.stdin); print("drift window rows", d["rows"], "dropped samples", d["dropped_samples"])'
python3 -c "print(f'drift on / off: {${sum[on]} / ${sum[off]}:.3f}')"
