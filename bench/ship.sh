#!/usr/bin/env bash
# `hone ship` on breast cancer: CSV → verified serving endpoint, wall time
# of the whole process (start, ORT load, train, validate, package, serve,
# smoke test, shutdown), five runs into fresh repositories, plus the stage
# table of the last run. Quality bars: hone train + hone eval on the shared
# splits of breast cancer, wine and diabetes.
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS=${MODELS:-../shared/models}
DATA=${DATA:-examples/data/breast_cancer.csv}
cargo build --release -q -p hone
HONE=target/release/hone
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export HONE_LOG=warn
echo "== hone ship $DATA (5 runs, fresh repository each)"
for run in 1 2 3 4 5; do
  start=$(date +%s%N)
  $HONE ship "$DATA" --target label --model-repository "$WORK/repo$run" --name bc \
    --http-port 0 --grpc-port 0 --metrics-port 0 --min-metric 0.9 --json > "$WORK/ship$run.json"
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  echo "run $run: ${ms} ms wall, $(python3 -c "import json,sys;r=json.load(open(sys.argv[1]));print(f\"{r['metric']} {r['value']:.4f}, in-process total {r['total_seconds']*1e3:.0f} ms\")" "$WORK/ship$run.json")"
done
echo "== stage table (run 5)"
python3 - "$WORK/ship5.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for s in r["stages"]:
    print(f"{s['stage']:<12} {s['seconds']*1e3:8.1f} ms  {s['status']}: {s['detail']}")
print(f"{'total':<12} {r['total_seconds']*1e3:8.1f} ms")
PY
echo "== hone ship --into a running hone serve (3 versions hot-loaded, no restart)"
mkdir -p "$WORK/live"
$HONE serve --model-repository "$WORK/live" --http-port 8790 --grpc-port 8791 --metrics-port 8792 2>/dev/null &
SERVE=$!
until curl -sf http://127.0.0.1:8790/v2/health/live >/dev/null; do sleep 0.05; done
for run in 1 2 3; do
  start=$(date +%s%N)
  $HONE ship "$DATA" --target label --model-repository "$WORK/live" --name bc --into http://127.0.0.1:8790 \
    --min-metric 0.9 --json > "$WORK/into$run.json"
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  python3 - "$WORK/into$run.json" "$ms" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
st = {s["stage"]: s for s in r["stages"]}
print(f"version {r['version']}: {sys.argv[2]} ms wall; serve (hot-load) {st['serve']['seconds']*1e3:.1f} ms, "
      f"smoke test {st['smoke test']['seconds']*1e3:.1f} ms: {st['serve']['detail']}")
PY
done
curl -s http://127.0.0.1:8790/v2/models/bc | python3 -c 'import json,sys; print("serving versions:", json.load(sys.stdin)["versions"])'
kill $SERVE; wait $SERVE 2>/dev/null || true
echo "== quality (hone train on train.csv with val.csv, hone eval on test.csv)"
for d in breast_cancer wine diabetes; do
  S=$MODELS/tabular/$d
  $HONE train "$S/train.csv" --val "$S/val.csv" --target label -o "$WORK/$d.onnx" --quiet ${EXTRA_ARGS:-}
  python3 - "$d" <(cat "$WORK/$d.card.json") <($HONE eval "$WORK/$d.onnx" --data "$S/test.csv" --json) <<'PY'
import json, sys
name, card, ev = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
val = card["metrics"]["validation"]
m = ev["metric"]
print(f"{name:<14} val {m} {val[m]:.4f}   test {m} {ev['value']:.4f}   (best epoch {card['training']['best_epoch']}, {card['training']['seconds']:.2f} s)")
PY
done
