#!/usr/bin/env bash
# A rollout under load: mlp100 served as versions 1, 2 (the same model) and
# 3 (the same graph with a band of weights overwritten: wrong answers), while
# `hone bench` drives c=16 HTTP JSON requests that name no version, in
# back-to-back 1 s windows. First 1 → 2 over 5, 25, 50, 100 %, then 2 → 3
# with the same policy, then again with a shadow-only first step (0 %). Prints each window (time, req/s, p99, failures),
# the time to 100 %, the time to detect and roll back the bad version, and
# how many requests the bad version answered.
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS=${MODELS:-../shared/models}
STEP_REQUESTS=${STEP_REQUESTS:-5000}
cargo build --release -q -p hone
HONE=$PWD/target/release/hone
WORK=$(mktemp -d)
SERVER=
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
R=$WORK/repo/mlp100
mkdir -p "$R/1" "$R/2" "$R/3"
cp "$MODELS/mlp/mlp100.onnx" "$R/1/model.onnx"
cp "$MODELS/mlp/mlp100.onnx" "$R/2/model.onnx"
python3 - "$MODELS/mlp/mlp100.onnx" "$R/3/model.onnx" <<'PY'
import struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
# Inside the weight blobs (raw_data, length-prefixed): the protobuf stays
# valid, the weights do not.
lo, hi = int(len(b) * 0.45) // 4 * 4, int(len(b) * 0.55) // 4 * 4
for o in range(lo, hi, 4):
    b[o:o + 4] = struct.pack("<f", 3.0 if (o // 4) % 2 else -3.0)
open(sys.argv[2], "wb").write(b)
PY
printf 'version_policy: { all: {} }\n' > "$R/config.pbtxt"
"$HONE" serve --model-repository "$WORK/repo" --http-port 18600 --grpc-port 18601 --metrics-port 18602 >"$WORK/log" 2>&1 &
SERVER=$!
URL=http://127.0.0.1:18600
for _ in $(seq 100); do curl -sf $URL/v2/health/ready >/dev/null && break; sleep 0.1; done
"$HONE" models traffic mlp100 --weights 1=100 --url $URL >/dev/null
success() { curl -s "$URL/v2/models/mlp100/versions/$1/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["model_stats"][0]["inference_stats"]["success"]["count"])'; }

run() { # $1: label, $2: rollout args
  local start=$SECONDS windows=$1
  ( for i in $(seq 14); do
      "$HONE" bench --url $URL --model mlp100 --concurrency 16 --duration 1s --warmup 0s --json 2>/dev/null \
        | python3 -c "import json,sys; s=json.load(sys.stdin)['steps'][0]; print(f'  window $i: {s[\"throughput\"]:7.0f} req/s  p99 {s[\"latency_us\"][\"p99\"]/1000:6.2f} ms  failed {sum(s[\"errors\"].values())}')"
    done ) > "$WORK/windows-$1" &
  local loadpid=$!
  sleep 3
  "$HONE" models rollout mlp100 $2 --json --wait --url $URL > "$WORK/status-$1" || true
  wait $loadpid
  echo "== $1: rollout started after window 3"
  cat "$WORK/windows-$1"
  python3 - "$WORK/status-$1" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"  state {s['state']} after {s['finished_unix'] - s['started_unix']:.2f} s" + (f": {s['reason']}" if s['reason'] else ""))
for st in s["steps"]:
    p99 = lambda x: "-" if x is None else f"{x*1000:.1f} ms"
    print(f"  step {st['percent']:3d} %: {st['seconds']:.2f} s, {st['new_requests']} requests to the new version, "
          f"error rate {st['new_error_rate']:.4f} vs {st['stable_error_rate']:.4f}, p99 {p99(st['new_p99_s'])} vs {p99(st['stable_p99_s'])}, "
          f"class changed {st['class_mismatch']}, mean |diff| {st['mean_abs_diff']}, {'passed' if st['passed'] else 'FAILED'}")
PY
}
run good "--to 2 --from 1 --steps 5,25,50,100 --step-requests $STEP_REQUESTS"
before=$(success 3)
run bad "--to 3 --from 2 --steps 5,25,50,100 --step-requests $STEP_REQUESTS"
echo "  the bad version answered $(( $(success 3) - before )) requests"
# The same bad version with a shadow-only first step (0 %).
before=$(success 3)
run bad-shadow-first "--to 3 --from 2 --steps 0,5,25,50,100 --step-requests $STEP_REQUESTS"
echo "  the bad version answered $(( $(success 3) - before )) requests"
"$HONE" models status mlp100 --url $URL
