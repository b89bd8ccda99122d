#!/usr/bin/env bash
# What request observability costs: mlp100 at c=16 (hone bench, HTTP JSON)
# against one `hone serve` per setting, settings alternated per round:
#   off        nothing on (Server-Timing is always sent)
#   access     --access-log --log-format json (stderr to a file)
#   trace      --otlp-endpoint to a local OTLP/HTTP sink, every request traced
#   trace1pct  the same at --trace-sample-ratio 0.01
#   payload    --payload-log at the default share (1 %)
# Prints req/s per round, each setting's ratio to off, and the span counters.
# ROUNDS (2), DURATION (6s), ONLY (a subset, "off" first) adjust it.
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS=${MODELS:-../shared/models}
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-6s}
cargo build --release -q -p hone
HONE=$PWD/target/release/hone
WORK=$(mktemp -d)
SERVER= SINK=
trap 'kill $SERVER $SINK 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/repo/mlp100/1" && cp "$MODELS/mlp/mlp100.onnx" "$WORK/repo/mlp100/1/model.onnx"
python3 - <<'PY' &
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"{}")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", 18599), H).serve_forever()
PY
SINK=$!
declare -A flags=(
  [off]=""
  [access]="--access-log --log-format json"
  [trace]="--otlp-endpoint http://127.0.0.1:18599"
  [trace1pct]="--otlp-endpoint http://127.0.0.1:18599 --trace-sample-ratio 0.01"
  [payload]="--payload-log $WORK/payloads"
)
# ONLY="off trace" runs a subset (off is always first).
read -r -a order <<<"${ONLY:-off access trace trace1pct payload}"
declare -A sum
for m in "${order[@]}"; do sum[$m]=0; done
for r in $(seq "$ROUNDS"); do
  for m in "${order[@]}"; do
    # shellcheck disable=SC2086
    "$HONE" serve --model-repository "$WORK/repo" --http-port 18500 --grpc-port 18501 --metrics-port 18502 \
      ${flags[$m]} >/dev/null 2>"$WORK/log-$m" &
    SERVER=$!
    for _ in $(seq 100); do curl -sf localhost:18500/v2/health/ready >/dev/null && break; sleep 0.1; done
    rps=$("$HONE" bench --url http://127.0.0.1:18500 --model mlp100 --concurrency 16 --duration "$DURATION" \
      --warmup 2s --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["steps"][0]["throughput"])')
    sleep 1.5
    extra=$(curl -s localhost:18502/metrics | grep -E '^hone_(trace|payload)' | tr '\n' ' ' || true)
    kill $SERVER; wait $SERVER 2>/dev/null || true; SERVER=
    echo "round $r $m: $rps req/s $extra"
    sum[$m]=$(python3 -c "print(${sum[$m]} + $rps)")
  done
done
echo "access log lines in the last round: $(grep -c hone::access "$WORK/log-access" || true)"
for m in "${order[@]}"; do
  python3 -c "print(f'$m / off: {${sum[$m]} / ${sum[off]}:.3f}')"
done
