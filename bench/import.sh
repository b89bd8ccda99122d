#!/usr/bin/env bash
# hone import, measured on this machine:
#  1. import time per format with hone's managed Python environment cached,
#     and cold (a fresh HONE_CACHE_DIR with pip's download cache off, so the
#     environment is built from PyPI first);
#  2. served throughput at c=16 (wrk, V2 JSON, one row per request) of the
#     imported XGBoost classifier and scikit-learn pipeline in `hone serve`,
#     next to a FastAPI + uvicorn server running the native framework in
#     Python (bench/native_peer.py), rounds alternated.
# Prints markdown; raw output lands in $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/import-$(date +%Y%m%d-%H%M%S)}
ROUNDS=${ROUNDS:-2}
# PARTS: which halves to run (import timing, serving), both by default.
PARTS=${PARTS:-import serve}
DURATION=${DURATION:-10}
mkdir -p "$OUT"
# HONE_BIN: a hone binary already built (else the release build).
if [ -z "${HONE_BIN:-}" ]; then cargo build --release -q -p hone; fi
HONE=${HONE_BIN:-$PWD/target/release/hone}
W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
export TF_CPP_MIN_LOG_LEVEL=3

echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(grep -q avx512_vnni /proc/cpuinfo && echo AVX-512 VNNI || echo AVX2 only)"
PY=$($HONE import --prepare sklearn,xgboost,lightgbm,catboost,keras 2>/dev/null)
"$PY" crates/cli/tests/import/make_models.py "$W/m" keras sklearn xgboost lightgbm catboost >/dev/null 2>&1

# format | model | extra flags
CASES=(
  "keras|seed.h5|"
  "savedmodel|seed_savedmodel|"
  "sklearn|churn.skops|--sample $W/m/churn.csv"
  "xgboost|xgb_cancer.json|"
  "lightgbm|lgb_diabetes.txt|"
  "catboost|cb_cancer.cbm|"
)
command -v wrk >/dev/null || { echo "wrk is missing (apt-get install wrk)" >&2; exit 1; }
secs() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>>"$OUT/import.log"; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
mkdir -p "$W/out"
for c in "${CASES[@]}"; do
  IFS='|' read -r fmt model flags <<<"$c"
  # shellcheck disable=SC2086
  "$HONE" import "$W/m/$model" -o "$W/out/$fmt.onnx" $flags >/dev/null 2>>"$OUT/import.log"
done
if [[ " $PARTS " == *" import "* ]]; then
echo
echo "| format | model | import, environment cached (s, median of 3) | import, cold environment (s) |"
echo "|---|---|---|---|"
for c in "${CASES[@]}"; do
  IFS='|' read -r fmt model flags <<<"$c"
  # shellcheck disable=SC2086
  warm=$(for i in 1 2 3; do secs "$HONE" import "$W/m/$model" -o "$W/out/$fmt.onnx" $flags; done | sort -n | sed -n 2p)
  # shellcheck disable=SC2086
  cold=$(HONE_CACHE_DIR="$W/cold-$fmt" PIP_NO_CACHE_DIR=1 secs "$HONE" import "$W/m/$model" -o "$W/out/$fmt-cold.onnx" $flags)
  rm -rf "$W/cold-$fmt"
  printf '| %s | %s | %.2f | %.1f |\n' "$fmt" "$model" "$warm" "$cold"
done
fi
[[ " $PARTS " == *" serve "* ]] || exit 0

# Serving: the peer's own venv (FastAPI, uvicorn and the native frameworks).
V=bench/.venv-import
if ! cmp -s bench/import_requirements.txt "$V/pins.txt"; then
  rm -rf "$V" && python3 -m venv "$V" && "$V/bin/pip" install -q -r bench/import_requirements.txt
  cp bench/import_requirements.txt "$V/pins.txt"
fi
REPO=$W/repo
mkdir -p "$REPO/xgb/1" "$REPO/churn/1"
cp "$W/out/xgboost.onnx" "$REPO/xgb/1/model.onnx"
cp "$W/out/sklearn.onnx" "$REPO/churn/1/model.onnx"
"$V/bin/python" - "$W" <<'PY'
import json, sys, pandas as pd
w = sys.argv[1]
row = pd.read_csv(f"{w}/m/cancer.csv").drop(columns=["label"]).iloc[0].tolist()
json.dump({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": row}]}, open(f"{w}/xgb.json", "w"))
r = pd.read_csv(f"{w}/m/churn.csv").iloc[0]
json.dump({"inputs": [
    {"name": "age", "shape": [1, 1], "datatype": "FP32", "data": [float(r.age)]},
    {"name": "income", "shape": [1, 1], "datatype": "FP32", "data": [float(r.income)]},
    {"name": "region", "shape": [1, 1], "datatype": "BYTES", "data": [r.region]},
    {"name": "plan", "shape": [1, 1], "datatype": "BYTES", "data": [r.plan]}]}, open(f"{w}/churn.json", "w"))
PY
for m in xgb churn; do
  printf 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = io.open("%s"):read("*a")\n' "$W/$m.json" >"$W/$m.lua"
done
wait_ready() { for _ in $(seq 300); do curl -sf "$1/v2/health/ready" >/dev/null && return 0; sleep 0.1; done; echo "not ready: $1" >&2; exit 1; }
rps() { wrk -t2 -c16 -d"${DURATION}s" -s "$W/$2.lua" "$1/v2/models/$2/infer" | tee -a "$OUT/wrk.log" | awk '/Requests\/sec/ {print $2}'; }
"$HONE" serve --model-repository "$REPO" --http-port 18300 --grpc-port 18301 --metrics-port 18302 >"$OUT/hone.log" 2>&1 &
HONE_PID=$!
wait_ready http://127.0.0.1:18300
echo
echo "| model | hone serve (req/s) | FastAPI + native framework (req/s) | ratio |"
echo "|---|---|---|---|"
for m in xgb churn; do
  src=$([ $m = xgb ] && echo xgb_cancer.json || echo churn.skops)
  PEER_MODEL_PATH="$W/m/$src" PEER_MODEL_NAME=$m "$V/bin/uvicorn" --app-dir bench native_peer:app \
    --host 127.0.0.1 --port 18310 --workers 1 --log-level warning --no-access-log >"$OUT/peer-$m.log" 2>&1 &
  PEER_PID=$!
  wait_ready http://127.0.0.1:18310
  h=(); p=()
  for _ in $(seq "$ROUNDS"); do
    h+=("$(rps http://127.0.0.1:18300 $m)"); p+=("$(rps http://127.0.0.1:18310 $m)")
  done
  kill $PEER_PID; wait $PEER_PID 2>/dev/null || true
  hs=$(printf '%s\n' "${h[@]}" | paste -sd/); ps=$(printf '%s\n' "${p[@]}" | paste -sd/)
  ratio=$(echo "(${h[*]/%/+}0)/(${p[*]/%/+}0)" | sed 's/ //g' | bc -l)
  printf '| %s | %s | %s | %.1f× |\n' "$m" "$hs" "$ps" "$ratio"
done
kill $HONE_PID
