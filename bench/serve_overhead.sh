#!/usr/bin/env bash
# hone against the limit server (crates/server/examples/limit_server.rs:
# hone's HTTP listener and V2 JSON decoder answering a constant) on mlp100,
# batch 1, V2 JSON, wrk at c=16: alternating rounds, so both see the same
# machine. Prints req/s and p99 per round, the ratio hone / limit, and the
# kernel's share of hone's CPU time in the round (stime / (utime + stime)
# of its process, from /proc: thread wake-ups and socket work show there).
# HONE=path/to/hone measures another build (an older commit's, say).
#   bench/serve_overhead.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-10}
CONC=${CONC:-16}
MODELS=${MODELS:-../shared/models}
KIT=${KIT:-../shared/peers}
command -v wrk >/dev/null || { echo "wrk missing: apt-get install wrk" >&2; exit 1; }
[ -n "${NO_BUILD:-}" ] || { cargo build --release -q -p hone && cargo build --release -q -p hone-server --example limit_server; }
REPO=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$REPO"; }
trap cleanup EXIT
# No config.pbtxt: the defaults a user gets.
mkdir -p "$REPO/mlp100/1" && cp "$MODELS/mlp/mlp100.onnx" "$REPO/mlp100/1/model.onnx"
# CONFIG="..." writes a config.pbtxt (to compare settings).
[ -z "${CONFIG:-}" ] || printf '%s\n' "$CONFIG" >"$REPO/mlp100/config.pbtxt"
HONE=${HONE:-target/release/hone}
"$HONE" serve --model-repository "$REPO" --http-port 18000 --grpc-port 18001 \
  --metrics-port 18002 >/dev/null 2>&1 &
HPID=$!
PIDS+=($HPID)
target/release/examples/limit_server 18100 &
PIDS+=($!)
for _ in $(seq 100); do
  curl -sf localhost:18000/v2/health/ready >/dev/null && break
  sleep 0.1
done
export BODY="$KIT/example/body1.json"
round() { # URL -> "req/s p99_us"
  wrk -t2 -c"$CONC" -d"${SECS}s" -s "$KIT/lib/post.lua" "$1" 2>/dev/null \
    | sed -n 's/^WRKJSON //p' \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.0f %d %d" % (d["requests"]/d["duration_us"]*1e6, d["p99_us"], d["non2xx"]))'
}
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(nproc) cores"
cpu() { awk '{print $14, $15}' "/proc/$HPID/stat"; }
echo "| round | hone req/s | hone p99 µs | hone kernel share | limit req/s | limit p99 µs | ratio |"
echo "|---|---|---|---|---|---|---|"
# A warm-up of each, unrecorded.
SECS=2 round http://127.0.0.1:18000/v2/models/mlp100/infer >/dev/null
SECS=2 round http://127.0.0.1:18100/v2/models/mlp100/infer >/dev/null
for r in $(seq "$ROUNDS"); do
  read -r u0 s0 < <(cpu)
  read -r h hp hbad < <(round http://127.0.0.1:18000/v2/models/mlp100/infer)
  read -r u1 s1 < <(cpu)
  ks=$(python3 -c "print(f'{($s1-$s0)/max(1,($u1-$u0)+($s1-$s0)):.0%}')")
  read -r l lp lbad < <(round http://127.0.0.1:18100/v2/models/mlp100/infer)
  [ "$hbad$lbad" = 00 ] || echo "non-2xx answers: hone $hbad, limit $lbad" >&2
  echo "| $r | $h | $hp | $ks | $l | $lp | $(python3 -c "print(f'{$h/$l:.2f}')") |"
done
