#!/usr/bin/env bash
# Raw text in: sentences per second at c=16, one sentence per request, for
#   hone minilm_text   the ensemble (tokenizer step -> MiniLM), text in;
#   hone + client tok  hone's minilm, the client tokenizing in Python with
#                      the `tokenizers` package and sending token ids;
#   FastAPI            tokenization (`tokenizers`) and onnxruntime in one
#                      Python process (bench/text_peer.py).
# One Python load driver (bench/pipelines.py) drives all three, rounds
# alternating; then the per-step split from hone's statistics.
#   bench/pipelines.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
SECS=${2:-15}
CONC=${CONC:-16}
MODELS=${MODELS:-../shared/models}
[ -n "${NO_BUILD:-}" ] || cargo build --release -q -p hone
VENV=bench/.venv-pipelines
if [ ! -x "$VENV/bin/python" ] || ! cmp -s bench/pipelines_requirements.txt "$VENV/pins.txt"; then
  rm -rf "$VENV" && python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r bench/pipelines_requirements.txt
  cp bench/pipelines_requirements.txt "$VENV/pins.txt"
fi
PY=$VENV/bin/python
REPO=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$REPO"; }
trap cleanup EXIT
SHARED=$MODELS examples/pipelines/setup.sh "$REPO" >/dev/null
target/release/hone serve --model-repository "$REPO" --http-port 18300 --grpc-port 18301 \
  --metrics-port 18302 >/dev/null 2>&1 &
PIDS+=($!)
PEER_MODEL_PATH=$MODELS/minilm/minilm.onnx PEER_TOKENIZER=$MODELS/minilm/tokenizer/tokenizer.json \
  "$VENV/bin/uvicorn" --app-dir bench text_peer:app --port 18310 --log-level warning &
PIDS+=($!)
for port in 18300 18310; do
  for _ in $(seq 300); do curl -sf "localhost:$port/v2/health/ready" >/dev/null && break; sleep 0.1; done
done
SENT=$MODELS/minilm/sentences.jsonl
TOK=$MODELS/minilm/tokenizer/tokenizer.json
run() { "$PY" bench/pipelines.py "$1" "$2" "$SENT" "$SECS" "$CONC" "$TOK"; }
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(nproc) cores; c=$CONC, ${SECS}s per run"
for url in http://127.0.0.1:18300/v2/models/minilm_text/infer http://127.0.0.1:18310/v2/models/minilm_text/infer; do
  SECS=3 run text "$url" >/dev/null
done
SECS=3 run tokens http://127.0.0.1:18300/v2/models/minilm/infer >/dev/null
echo "| round | server | sentences/s | p50 ms | p99 ms | errors |"
echo "|---|---|---|---|---|---|"
row() { python3 -c 'import json,sys; d=json.loads(sys.argv[3]); print("| %s | %s | %.0f | %.1f | %.1f | %d |" % (sys.argv[1], sys.argv[2], d["per_s"], d["p50_ms"], d["p99_ms"], d["errors"]))' "$@"; }
for r in $(seq "$ROUNDS"); do
  row "$r" "hone minilm_text (text in)" "$(run text http://127.0.0.1:18300/v2/models/minilm_text/infer)"
  row "$r" "hone minilm + client tokenizing" "$(run tokens http://127.0.0.1:18300/v2/models/minilm/infer)"
  row "$r" "FastAPI tokenizers + onnxruntime" "$(run text http://127.0.0.1:18310/v2/models/minilm_text/infer)"
done
echo
echo "Per step, from hone's statistics (every request since start):"
echo "| model | requests | mean queue ms | mean compute ms | mean batch |"
echo "|---|---|---|---|---|"
for m in minilm_text minilm_tokenizer minilm; do
  curl -s "localhost:18300/v2/models/$m/stats" | python3 -c '
import json, sys
s = json.load(sys.stdin)["model_stats"][0]
i = s["inference_stats"]
n = max(1, i["success"]["count"])
print("| %s | %d | %.2f | %.2f | %.1f |" % (sys.argv[1], i["success"]["count"], i["queue"]["ns"] / n / 1e6,
      i["compute_infer"]["ns"] / max(1, i["compute_infer"]["count"]) / 1e6,
      s["inference_count"] / max(1, s["execution_count"])))' "$m"
done
