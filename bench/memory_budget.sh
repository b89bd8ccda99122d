#!/usr/bin/env bash
# The model memory budget under skewed load: MODELS models (default 40),
# each x[1,N] @ W[N,N] @ V[N,1] (N=2048: 16 MiB of weights), one engine
# instance and one intra-op thread each, driven open-loop at RATE
# requests/s over V2 JSON on CONCURRENCY connections, each request to a
# model drawn from Zipf(ZIPF_S) (crates/cli/examples/many_models.rs);
# latency counts from when a request was due.
#
# "fits": a budget everything fits in (models load on their first request,
# then stay): after a warm-up that loads every model, each model's measured
# footprint gives the total, and the load run gives the hot models' p99.
# "budget": a budget of a third of that total: evictions under the same
# load; RSS sampled every 0.1 s; the requests that waited for a load give
# the cold start. Rounds alternate fits/budget ROUNDS times.
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS=${MODELS:-40}
N=${N:-2048}
DURATION=${DURATION:-20}
CONCURRENCY=${CONCURRENCY:-32}
ZIPF_S=${ZIPF_S:-1.1}
RATE=${RATE:-40}
ROUNDS=${ROUNDS:-2}
cargo build --release -q -p hone --bin hone --example many_models
HONE=$PWD/target/release/hone
LOAD=$PWD/target/release/examples/many_models
REPO=$(mktemp -d)
PID=
trap 'rm -rf "$REPO"; [ -n "$PID" ] && kill $PID 2>/dev/null || true' EXIT
"$LOAD" make "$REPO" "$MODELS" "$N"
URL=http://127.0.0.1:18710
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $MODELS models, N=$N, $RATE req/s on $CONCURRENCY connections, Zipf s=$ZIPF_S, ${DURATION}s per run"

serve() {
  "$HONE" serve --model-repository "$REPO" --http-port 18710 --grpc-port 18711 --metrics-port 18712 \
    --model-memory-budget "$1" >/dev/null 2>&1 &
  PID=$!
  until curl -sf $URL/v2/health/ready >/dev/null; do sleep 0.1; done
}
stop() { kill $PID; wait $PID 2>/dev/null || true; PID=; }
rss() { awk '/VmRSS/ {print int($2/1024)}' /proc/$PID/status; }
figure() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

TOTAL=
for round in $(seq "$ROUNDS"); do
  # --- everything fits
  serve 100GiB
  base=$(rss)
  "$LOAD" load $URL "$MODELS" 5 8 0 >/dev/null   # uniform, closed-loop: every model loads
  total=$(curl -s $URL/dashboard.json | figure 'd["memory"]["resident_bytes"]')
  resident=$(curl -s $URL/dashboard.json | figure 'sum(m["resident"] for m in d["memory"]["models"])')
  TOTAL=${TOTAL:-$total}
  r=$("$LOAD" load $URL "$MODELS" "$DURATION" "$CONCURRENCY" "$ZIPF_S" "$RATE")
  echo "round $round fits:   base RSS ${base} MiB; $resident models resident, $((total >> 20)) MiB measured; RSS after $(rss) MiB; $r"
  stop

  # --- a third of the total
  budget=$((TOTAL / 3))
  serve "$budget"
  base=$(rss)
  "$LOAD" load $URL "$MODELS" 5 "$CONCURRENCY" "$ZIPF_S" "$RATE" >/dev/null   # warm-up
  peak=0
  ( while kill -0 $PID 2>/dev/null; do awk '/VmRSS/ {print int($2/1024)}' /proc/$PID/status 2>/dev/null; sleep 0.1; done ) > "$REPO/rss.log" &
  SAMPLER=$!
  r=$("$LOAD" load $URL "$MODELS" "$DURATION" "$CONCURRENCY" "$ZIPF_S" "$RATE")
  kill $SAMPLER 2>/dev/null || true
  peak=$(sort -n "$REPO/rss.log" | tail -1)
  ev=$(curl -s $URL/dashboard.json | figure 'sum(m["evictions"] for m in d["memory"]["models"])')
  # The first request of a model out of memory, on an idle server: the
  # least popular models, one after another.
  body=$(python3 -c "import json; print(json.dumps({'inputs':[{'name':'x','shape':[1,$N],'datatype':'FP32','data':[0.5]*$N}]}))")
  first=$(for i in $(seq $((MODELS - 5)) $((MODELS - 1))); do
    curl -s -o /dev/null -w '%{time_total}\n' -X POST "$URL/v2/models/m$(printf %02d "$i")/infer" -d "$body"
  done | sort -n | awk '{a[NR]=$1*1000} END {printf "%.1f-%.1f ms (median %.1f)", a[1], a[NR], a[int((NR+1)/2)]}')
  echo "round $round budget: $((budget >> 20)) MiB (a third of $((TOTAL >> 20)) MiB); base RSS ${base} MiB; peak RSS under load ${peak} MiB; $ev evictions; first request of an evicted model, idle: $first; $r"
  stop
done
