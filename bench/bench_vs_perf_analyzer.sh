#!/usr/bin/env bash
# hone bench vs perf_analyzer (Triton's load generator, from the shared peers
# kit) on the same `hone serve`, same model and load, one after the other:
# batch 1, closed loop; mlp100 at c = 1, 4, 16 over HTTP JSON, HTTP binary
# and gRPC, resnet18 at c = 1, 4 over HTTP binary and gRPC. Prints
# throughput and p50/p99 from each, their ratio, and what the server itself
# counted during hone bench's run. On few cores a load generator's own CPU
# cost is taken from the server: where the server is cheap (mlp100) the
# leaner client measures more. Numbers go to stdout; no test times.
#   SECS=N   measured seconds per run (default 6)
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=$(cd "${KIT:-../shared/peers}" && pwd)
MODELS=$(cd "${MODELS:-../shared/models}" && pwd)
SECS=${SECS:-6}
cargo build --release -q -p hone
bash "$KIT/setup.sh" perf_analyzer >/dev/null
HONE=$PWD/target/release/hone
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
for m in mlp100 resnet18; do
  f=$MODELS/mlp/mlp100.onnx; [ $m = resnet18 ] && f=$MODELS/resnet18/resnet18.onnx
  mkdir -p "$WORK/repo/$m/1" && cp "$f" "$WORK/repo/$m/1/model.onnx"
done
HONE_LOG=warn "$HONE" serve --model-repository "$WORK/repo" --http-port 8810 --grpc-port 8811 \
  --no-metrics > "$WORK/serve.log" 2>&1 &
for _ in $(seq 100); do curl -sf http://127.0.0.1:8810/v2/health/ready >/dev/null && break; sleep 0.1; done

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
echo
echo "server req/s: what the server itself counted over hone bench's window (its statistics)."
echo
echo "| model | protocol | c | perf_analyzer req/s | hone bench req/s | hone/pa | server req/s | pa p50 / p99 ms | hone p50 / p99 ms |"
echo "|---|---|---|---|---|---|---|---|---|"
run() { # model protocol concurrency
  local m=$1 proto=$2 c=$3 pa
  case $proto in
    http-json) pa=(-i http -u 127.0.0.1:8810 --input-tensor-format json --output-tensor-format json) ;;
    http-binary) pa=(-i http -u 127.0.0.1:8810) ;;
    grpc) pa=(-i grpc -u 127.0.0.1:8811) ;;
  esac
  # perf_analyzer: three windows of SECS/3 s, the stability check off
  # (its last window is reported), as the peers kit runs it.
  local win=$(( SECS * 1000 / 3 ))
  bash "$KIT/perf_analyzer.sh" -m "$m" -b 1 "${pa[@]}" --concurrency-range "$c" \
    -p "$win" -s 1000 -r 3 -f "$WORK/pa.csv" > "$WORK/pa.log" 2>&1 || { cat "$WORK/pa.log"; exit 1; }
  read -r pa_rps pa_p50 pa_p99 < <(python3 - "$WORK/pa.csv" <<'EOF'
import csv, sys
d = next(csv.DictReader(open(sys.argv[1])))
print(d["Inferences/Second"], int(d["p50 latency"]) / 1e3, int(d["p99 latency"]) / 1e3)
EOF
)
  before=$(curl -sf "http://127.0.0.1:8810/v2/models/$m/stats")
  t0=$(date +%s.%N)
  "$HONE" bench --url http://127.0.0.1:8810 --grpc-url http://127.0.0.1:8811 --model "$m" \
    --protocol "$proto" --concurrency "$c" --duration "${SECS}s" --warmup 0s --json > "$WORK/hb.json"
  t1=$(date +%s.%N)
  after=$(curl -sf "http://127.0.0.1:8810/v2/models/$m/stats")
  read -r hb_rps hb_p50 hb_p99 srv < <(python3 - "$WORK/hb.json" "$before" "$after" "$t0" "$t1" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))["steps"][0]
assert not s["errors"], s["errors"]
n = lambda j: int(json.loads(j)["model_stats"][0]["inference_stats"]["success"]["count"])
# The server's count over the whole command (probe and setup included).
srv = (n(sys.argv[3]) - n(sys.argv[2])) / (float(sys.argv[5]) - float(sys.argv[4]))
print(round(s["throughput"], 1), s["latency_us"]["p50"] / 1e3, s["latency_us"]["p99"] / 1e3, round(srv, 1))
EOF
)
  ratio=$(python3 -c "print(f'{$hb_rps / $pa_rps:.3f}')")
  echo "| $m | $proto | $c | $pa_rps | $hb_rps | $ratio | $srv | $pa_p50 / $pa_p99 | $hb_p50 / $hb_p99 |"
}
for proto in http-json http-binary grpc; do
  for c in 1 4 16; do run mlp100 "$proto" "$c"; done
done
# resnet18: the server, not the client, is the bottleneck.
for proto in http-binary grpc; do
  for c in 1 4; do run resnet18 "$proto" "$c"; done
done
