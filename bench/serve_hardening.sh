#!/usr/bin/env bash
# What hardening costs on the serving path: mlp100, batch 1, V2 JSON.
#   OLD=/path/to/hone  a binary from before the hardening (default: none, then
#                      only this build's configurations are measured)
#   ONLY="old off"     measure only these configurations
# For each configuration (old; new with keys and TLS off; keys on; TLS on;
# both) it reports:
#   - instructions per request under callgrind (deterministic: the figure to
#     compare), for hyper's connection dispatcher (decode, route, infer wait,
#     encode) and for the whole process, over 1200 keep-alive requests at
#     c=1, counted from when the model is ready;
#   - wrk at c=16 for 10 s, rounds interleaved (noisy on a shared 2-core VM:
#     read the spread across rounds, not one number).
# Numbers go to stdout; nothing here is a timed test.
set -euo pipefail
[ -n "${TRACE:-}" ] && set -x
cd "$(dirname "$0")/.."
MODELS=$(cd "${MODELS:-../shared/models}" && pwd)
ROUNDS=${ROUNDS:-3}
cargo build --release -q -p hone
NEW=$PWD/target/release/hone
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/repo/mlp100/1" && cp "$MODELS/mlp/mlp100.onnx" "$WORK/repo/mlp100/1/model.onnx"
BODY=$(python3 -c 'import json; print(json.dumps({"inputs":[{"name":"input","shape":[1,100],"datatype":"FP32","data":[1.0]*100}]}))')
echo "$BODY" > "$WORK/body.json"
echo secret-key > "$WORK/key"
printf 'wrk.method = "POST"\nwrk.body = [[%s]]\n' "$BODY" > "$WORK/post.lua"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -days 1 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 2>/dev/null

PORT=8790
configs() {
  {
    if [ -n "${OLD:-}" ]; then echo "old|$OLD|http|"; fi
    echo "off|$NEW|http|"
    echo "keys|$NEW|http|--api-key-file $WORK/key"
    echo "tls|$NEW|https|--tls-cert $WORK/cert.pem --tls-key $WORK/key.pem"
    echo "tls+keys|$NEW|https|--tls-cert $WORK/cert.pem --tls-key $WORK/key.pem --api-key-file $WORK/key"
  } | while IFS= read -r line; do
    if [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" ${line%%|*} "* ]]; then echo "$line"; fi
  done
}

start() { # prefix binary flags
  $1 "$2" serve --model-repository "$WORK/repo" --http-port $PORT --no-grpc --no-metrics $3 \
    > "$WORK/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 200); do
    curl -skf "$SCHEME://127.0.0.1:$PORT/v2/health/ready" >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "server did not start"; cat "$WORK/server.log"; exit 1
}

stop() { kill -INT "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }

# 1200 keep-alive requests from Python at c=1 (the client is outside the count).
drive() {
  python3 - "$SCHEME" "$PORT" "$WORK/body.json" "$AUTH" <<'EOF'
import http.client, ssl, sys
scheme, port, body, auth = sys.argv[1], int(sys.argv[2]), open(sys.argv[3], "rb").read(), sys.argv[4]
c = (http.client.HTTPSConnection("127.0.0.1", port, context=ssl._create_unverified_context())
     if scheme == "https" else http.client.HTTPConnection("127.0.0.1", port))
h = {"Authorization": f"Bearer {auth}"} if auth else {}
for _ in range(1200):
    c.request("POST", "/v2/models/mlp100/infer", body, h)
    r = c.getresponse(); r.read(); assert r.status == 200, r.status
EOF
}

if [ -z "${WRK_ONLY:-}" ]; then
echo "## instructions per request (callgrind, c=1, 1200 requests)"
echo "| config | connection task | whole process |"
echo "|---|---|---|"
while IFS='|' read -r name bin SCHEME flags; do
  AUTH=""; [[ "$flags" == *api-key* ]] && AUTH=secret-key
  rm -f "$WORK"/cg.out*
  start "valgrind --tool=callgrind --callgrind-out-file=$WORK/cg.out --trace-children=no" "$bin" "$flags"
  # Counting starts once the model is loaded and ready.
  callgrind_control -z "$PID" >/dev/null
  drive
  callgrind_control -d "$PID" >/dev/null
  stop
  f=$(ls -t "$WORK"/cg.out.* | head -1)
  total=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1; exit}')
  # hyper's HTTP/1 dispatcher (every instantiation): the connection's
  # work from bytes in to bytes out, in old and new builds alike.
  conn=$(callgrind_annotate --inclusive=yes "$f" 2>/dev/null \
    | grep -E 'h1::dispatch::Dispatcher<.*>::poll_catch' \
    | awk '{gsub(",","",$1); s+=$1} END {print s+0}')
  printf '| %s | %s | %s |\n' "$name" "$(( ${conn:-0} / 1200 ))" "$(( ${total:-0} / 1200 ))"
done < <(configs)
fi

echo
echo "## wrk c=16, 10 s, $ROUNDS interleaved rounds (req/s, p99)"
for r in $(seq "$ROUNDS"); do
  while IFS='|' read -r name bin SCHEME flags; do
    AUTH=""; [[ "$flags" == *api-key* ]] && AUTH=secret-key
    start "" "$bin" "$flags"
    hdr=(); [ -n "$AUTH" ] && hdr=(-H "Authorization: Bearer $AUTH")
    out=$(wrk -t2 -c16 -d10s --latency "${hdr[@]}" -s "$WORK/post.lua" \
      "$SCHEME://127.0.0.1:$PORT/v2/models/mlp100/infer")
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p99=$(echo "$out" | awk '$1=="99%" {print $2}')
    errs=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    if [ -n "$errs" ]; then echo "round $r  $name: $errs non-2xx answers, not a measurement"; exit 1; fi
    echo "round $r  $name  ${rps} req/s  p99 ${p99}"
    stop
  done < <(configs)
done
